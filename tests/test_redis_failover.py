"""Redis lost while a real Rhetor serves (`python -m rhetor`, its Redis reached through a relay the test cuts):
requests keep flowing — rate limits, budgets, breakers and the cache fall back to per-process state — /health
says which guarantees are per-process right now, and they are shared again once Redis answers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.server import free_port
from tests.fakes.tcp_cut import CutRelay

pytestmark = pytest.mark.scale
ADMIN = "admin-secret-for-failover"


class _Loop:
    """The relay's own event loop, in a thread (the test itself is synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def relayed(tmp_path: Path, redis_prefix: tuple[str, str]) -> Iterator[tuple[str, CutRelay, _Loop]]:
    url, prefix = redis_prefix
    loop = _Loop()
    relay = CutRelay(url)
    loop.run(relay.start())
    port = free_port()
    env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_PORT": str(port), "RHETOR_ADMIN_KEY": ADMIN,
           "RHETOR_SIMULATED_DELAY_SCALE": "0", "RHETOR_USAGE_LEDGER": "0", "RHETOR_REDIS_URL": relay.url,
           "RHETOR_REDIS_PREFIX": prefix, "RHETOR_BUDGET_POLICY": "block", "RHETOR_BUDGET_DAILY_LIMIT": "100"}
    log = (tmp_path / "rhetor.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "rhetor.log").read_text()[-2000:]
            try:
                if httpx.get(base + "/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "rhetor did not start"
            time.sleep(0.1)
        yield base, relay, loop
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        loop.run(relay.cut())
        loop.stop()


def _storage(base: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(base + "/health", headers={"Authorization": f"Bearer {ADMIN}"},
                                      timeout=10).json()["details"]["storage"]
    return found


def _eventually(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_requests_flow_while_redis_is_lost_and_sharing_comes_back(
        relayed: tuple[str, CutRelay, _Loop]) -> None:
    base, relay, loop = relayed
    chat = {"message": "hello", "component": "ergon"}
    auth = {"Authorization": f"Bearer {ADMIN}"}
    assert httpx.post(base + "/api/v1/chat", json=chat, headers=auth, timeout=10).status_code == 200
    storage = _storage(base)
    assert "budget spend counters" in storage["shared"] and "breakers and cool-downs" in storage["shared"]

    loop.run(relay.cut())  # Redis lost while running
    _eventually(lambda: "breakers and cool-downs" in _storage(base)["per_process"], 3,
                "/health did not say the breakers became per-process")
    started = time.monotonic()
    codes = [httpx.post(base + "/api/v1/chat", json=chat, headers=auth, timeout=10).status_code for _ in range(5)]
    assert codes == [200] * 5  # budgets counted locally, nothing refused for want of Redis
    assert time.monotonic() - started < 5  # a lost Redis costs at most one timed-out call, not one per request
    storage = _storage(base)
    for guarantee in ("rate limits", "budget spend counters", "breakers and cool-downs"):
        assert guarantee in storage["per_process"], storage
    assert storage["redis_shared"]["change_bus"]["state"] == "reconnecting"

    loop.run(relay.restore())  # back: the bus re-subscribes, the parked spend is reconciled
    _eventually(lambda: "budget spend counters" in _storage(base)["shared"], 8,
                "budgets did not become shared again after Redis came back")
    storage = _storage(base)
    assert "breakers and cool-downs" in storage["shared"] and "unreconciled" not in storage["redis_shared"]["budgets"]
    assert httpx.post(base + "/api/v1/chat", json=chat, headers=auth, timeout=10).status_code == 200
