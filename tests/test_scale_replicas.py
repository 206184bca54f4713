"""Two real Rhetor replicas (`python -m rhetor` on two ports, two data dirs) sharing one PostgreSQL schema and one
Redis prefix: a conversation continued across replicas, a key created and revoked on one honoured by the other
within a second, one global rate limit; and an unreachable engine at start exits 2 naming its URL without the
password. Time-bounded: the whole file runs in well under 60 s."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.server import free_port

ADMIN = "admin-secret-for-scale-tests"


def _start(tmp: Path, name: str, extra: dict[str, str]) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    data = tmp / name
    data.mkdir()
    env = {**os.environ, "RHETOR_DATA_DIR": str(data), "RHETOR_PORT": str(port), "RHETOR_ADMIN_KEY": ADMIN,
           "RHETOR_SIMULATED_DELAY_SCALE": "0", "RHETOR_KEYS_POLL_S": "0.2", "RHETOR_USAGE_LEDGER": "0", **extra}
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=log, stderr=subprocess.STDOUT)
    return f"http://127.0.0.1:{port}", proc


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "rhetor exited at start"
        try:
            if httpx.get(f"{url}/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "rhetor did not start"
        time.sleep(0.1)


@pytest.fixture
def replicas(tmp_path: Path, pg_url: str, redis_prefix: tuple[str, str]) -> Iterator[list[str]]:
    redis_url, prefix = redis_prefix
    extra = {"RHETOR_DATABASE_URL": pg_url, "RHETOR_REDIS_URL": redis_url, "RHETOR_REDIS_PREFIX": prefix}
    started = [_start(tmp_path, n, extra) for n in ("a", "b")]
    try:
        for url, proc in started:
            _wait(url, proc)
        yield [url for url, _ in started]
    finally:
        for _, proc in started:
            proc.terminate()
        for _, proc in started:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _chat(url: str, key: str, **body: object) -> httpx.Response:
    return httpx.post(url + "/api/v1/chat", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=15)


def _admin(url: str, method: str, path: str, body: dict[str, object] | None = None) -> httpx.Response:
    return httpx.request(method, url + path, json=body, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)


def test_replicas_share_contexts_keys_and_one_rate_limit(replicas: list[str]) -> None:
    a, b = replicas
    health = httpx.get(b + "/health", headers={"Authorization": f"Bearer {ADMIN}"}).json()["details"]["storage"]
    assert health["database"]["backend"] == "postgres" and "rate limits" in health["shared"]

    # A key created on A works on B (B's poller reads the shared generation). Until B has read it, B is still
    # the open Rhetor it was (no key existed anywhere): it answers without knowing the caller, so without limits.
    made = _admin(a, "POST", "/api/v1/keys", {"name": "ergon", "rpm": 5}).json()
    secret, key_id = made["secret"], made["key"]["id"]
    deadline = time.monotonic() + 1.5
    while "x-ratelimit-limit-requests" not in (r := _chat(b, secret, message="first", context_id="ergon:s")).headers:
        assert time.monotonic() < deadline, "B did not see the key created on A within a second"
        time.sleep(0.05)
    assert r.status_code == 200, r.text

    # The conversation continues on the other replica: B wrote the first turn, A adds the second, B reads both.
    assert _chat(a, secret, message="second", context_id="ergon:s").status_code == 200
    stored = _admin(b, "GET", "/api/v1/contexts/ergon:s").json()
    contents = [m["content"] for m in stored["messages"] if m["role"] == "user"]
    assert contents[-2:] == ["first", "second"]  # (open-door tries before B knew the key are turns too)

    # One global limit: 5 requests per minute across both replicas (2 used above).
    codes = [_chat(url, secret, message="x").status_code for url in (a, b, a, b)]
    assert codes == [200, 200, 200, 429], codes

    # A key revoked on A is refused by B within a second.
    assert _admin(a, "DELETE", f"/api/v1/keys/{key_id}").status_code == 200
    revoked_at = time.monotonic()
    while _chat(b, secret, message="after").status_code != 401:
        assert time.monotonic() - revoked_at < 1.0, "B still accepted a key revoked on A after a second"
        time.sleep(0.05)


def test_unreachable_postgres_at_start_exits_2_naming_the_url_without_password(tmp_path: Path) -> None:
    pytest.importorskip("asyncpg")
    env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_PORT": str(free_port()),
           "RHETOR_DATABASE_URL": f"postgresql://rhetor:hunter2@127.0.0.1:{free_port()}/rhetor"}
    done = subprocess.run([sys.executable, "-m", "rhetor"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "cannot connect to PostgreSQL at postgresql://rhetor:***@127.0.0.1:" in done.stderr
    assert "hunter2" not in done.stderr and "RHETOR_DEGRADED_START=1" in done.stderr
