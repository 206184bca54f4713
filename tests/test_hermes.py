"""Hermes integration against a fake Hermes that enforces the contract: the client, the registration
lifecycle inside a real Rhetor (real bound port, heartbeats with the token, re-register after a Hermes
restart, unregister on shutdown), a missing Hermes, and `python -m hermes_integration`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from hermes_integration import HermesClient, HermesError, Registration, registration_payload
from rhetor.api.app import create_app
from rhetor.api.health import RhetorServer
from rhetor.settings import Settings
from tests.fakes.hermes import FakeHermes
from tests.fakes.server import free_port, serve_app


@pytest.fixture
def hermes() -> Iterator[tuple[FakeHermes, str]]:
    fake = FakeHermes()
    with serve_app(fake.app) as url:
        yield fake, url


def wait_for(cond: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@contextmanager
def served(settings: Settings) -> Iterator[tuple[str, RhetorServer]]:
    """Rhetor as `python -m rhetor` runs it (RhetorServer), on port 0 so only the server knows the real port."""
    app = create_app(settings)
    server = RhetorServer(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                                         timeout_graceful_shutdown=1), app.state.runtime)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    wait_for(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(10)


def test_fake_enforces_the_contract(hermes: tuple[FakeHermes, str]) -> None:
    _, url = hermes
    r = httpx.post(f"{url}/api/register", json={"name": "rhetor", "version": "1"})  # no type, no endpoint
    assert r.status_code == 422
    reg = httpx.post(f"{url}/api/register", json=registration_payload("http://127.0.0.1:1", "1", 1)).json()
    body = {"component_id": reg["component_id"], "status": {}}
    assert httpx.post(f"{url}/api/heartbeat", json=body).status_code == 422
    assert httpx.post(f"{url}/api/heartbeat", json=body, headers={"X-Authentication-Token": "nope"}).status_code == 401
    ok = httpx.post(f"{url}/api/heartbeat", json=body, headers={"X-Authentication-Token": reg["token"]})
    assert ok.status_code == 200


async def test_client_round_trip(hermes: tuple[FakeHermes, str]) -> None:
    _, url = hermes
    client = HermesClient(url)
    try:
        cid, token = await client.register(registration_payload("http://127.0.0.1:8003", "0.2.0", 8003))
        await client.heartbeat(cid, token, {"status": "healthy"})
        listed = await client.components()
        assert [c["endpoint"] for c in listed] == ["http://127.0.0.1:8003"]
        assert listed[0]["type"] == "rhetor" and "llm_management" in listed[0]["capabilities"]
        with pytest.raises(HermesError) as bad:
            await client.heartbeat(cid, '{"payload": {}, "signature": "x"}', {})
        assert bad.value.http_status == 401
        await client.unregister(cid, token)
        assert await client.components() == []
    finally:
        await client.aclose()


async def until(cond: Callable[[], Any]) -> None:
    for _ in range(1000):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_registration_reregisters_after_restart(hermes: tuple[FakeHermes, str]) -> None:
    fake, url = hermes
    reg = Registration(HermesClient(url), lambda: registration_payload("http://127.0.0.1:9", "1", 9),
                       heartbeat_s=0.05, retry_max_s=0.1, check_s=0.2)
    reg.start()
    try:
        await until(lambda: "heartbeat" in fake.kinds() and reg.listed)
        assert reg.registered and list(fake.components) == ["rhetor"]
        fake.restart()  # Hermes forgets us, yet keeps answering our heartbeats with 200
        beats = fake.kinds().count("heartbeat")
        await until(lambda: fake.kinds().count("heartbeat") > beats)
        assert fake.components == {}
        # before: nothing else happened — never listed again, while /health said registeredWithHermes: true
        await until(lambda: reg.registrations >= 2 and "rhetor" in fake.components)
        assert reg.registered and list(fake.components) == ["rhetor"] and reg.component_id == "rhetor"
        assert ("lookup", "rhetor") in fake.calls
    finally:
        await reg.aclose()
    assert fake.components == {} and fake.kinds()[-1] == "unregister"


async def test_registered_reports_what_hermes_lists(hermes: tuple[FakeHermes, str]) -> None:
    fake, url = hermes
    payload: list[dict[str, Any] | None] = [registration_payload("http://127.0.0.1:9", "1", 9)]
    reg = Registration(HermesClient(url), lambda: payload[0], heartbeat_s=0.05, retry_max_s=0.1, check_s=0.1)
    reg.start()
    try:
        await until(lambda: reg.listed)
        payload[0] = None  # hold the next registration back, to observe the state in between
        fake.restart()
        await until(lambda: reg.listed is False or reg.token is None)
        assert not reg.registered and reg.describe()["registered"] is False
        payload[0] = registration_payload("http://127.0.0.1:9", "1", 9)
        await until(lambda: reg.listed and "rhetor" in fake.components)
        assert reg.registered
    finally:
        await reg.aclose()


async def test_reregister_after_token_expiry_keeps_one_entry(hermes: tuple[FakeHermes, str]) -> None:
    fake, url = hermes
    fake.token_ttl_s = 0.15  # heartbeats then get 401, as after an hour with the real Hermes
    reg = Registration(HermesClient(url), lambda: registration_payload("http://127.0.0.1:9", "1", 9),
                       heartbeat_s=0.05, retry_max_s=0.1, check_s=60)
    reg.start()
    try:
        await until(lambda: reg.registrations >= 3)
    finally:
        await reg.aclose()
    registers = [body for kind, body in fake.calls if kind == "register"]
    assert len(registers) >= 3 and {b["component_id"] for b in registers} == {"rhetor"}
    # before: each re-register came without an id, Hermes invented a new one, and the old entry stayed
    assert fake.components == {}  # the one entry, updated each time, then unregistered


async def test_stable_id_is_configurable_and_kept(hermes: tuple[FakeHermes, str]) -> None:
    fake, url = hermes
    reg = Registration(HermesClient(url), lambda: registration_payload("http://127.0.0.1:9", "1", 9),
                       heartbeat_s=0.05, component_id="rhetor-2")
    try:
        assert await reg.register_once() and await reg.check()
        assert reg.component_id == "rhetor-2" and list(fake.components) == ["rhetor-2"]
    finally:
        await reg.aclose()


def test_rhetor_registers_its_real_endpoint_and_unregisters(hermes: tuple[FakeHermes, str],
                                                             make_settings: Callable[..., Settings]) -> None:
    fake, url = hermes
    settings = make_settings(hermes_url=url, hermes_heartbeat_s=0.05, hermes_check_s=0.1)
    with served(settings) as (base, _server):
        comp = wait_for(lambda: next(iter(fake.components.values()), None))
        assert comp["endpoint"] == base and comp["name"] == "rhetor" and comp["type"] == "rhetor"
        assert comp["metadata"]["port"] == int(base.rsplit(":", 1)[1])
        wait_for(lambda: "heartbeat" in fake.kinds())
        health = httpx.get(f"{base}/health").json()
        assert health["registeredWithHermes"] is True and health["port"] == comp["metadata"]["port"]
        assert {"name": "hermes", "required": False, "status": "registered", "url": url} in health["dependencies"]
        assert comp["component_id"] == "rhetor"
        fake.restart()  # forgotten: the listing check (every 0.1 s here) brings the entry back
        wait_for(lambda: "rhetor" in fake.components)
        wait_for(lambda: httpx.get(f"{base}/health").json()["details"]["hermes"]["listed"])
        assert httpx.get(f"{base}/health").json()["registeredWithHermes"] is True
    assert fake.components == {}
    assert "unregister" in fake.kinds()
    assert fake.statuses and fake.statuses[0]["status"] == "shutting_down" and fake.statuses[0]["component"] == "rhetor"


def test_missing_hermes_never_delays_serving(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(hermes_url=f"http://127.0.0.1:{free_port()}", hermes_retry_max_s=0.2)
    started = time.monotonic()
    with served(settings) as (base, _server):
        health = httpx.get(f"{base}/health").json()
        assert time.monotonic() - started < 5
        assert health["status"] == "healthy" and health["registeredWithHermes"] is False
        wait_for(lambda: httpx.get(f"{base}/health").json()["details"]["hermes"]["last_error"])
        assert httpx.get(f"{base}/ready").status_code == 200


def test_default_settings_leave_hermes_alone(make_settings: Callable[..., Settings]) -> None:
    assert make_settings().hermes_url is None
    env_default = Settings.from_env({"HERMES_PORT": "8101"})
    assert env_default.hermes_url == "http://localhost:8101" and env_default.hermes_enabled
    assert Settings.from_env({"RHETOR_HERMES": "0"}).hermes_enabled is False


def test_command_line(hermes: tuple[FakeHermes, str], tmp_path: Path) -> None:
    fake, url = hermes
    env = {**os.environ, "HERMES_URL": url, "RHETOR_RUN_DIR": str(tmp_path), "RHETOR_PORT": "8123"}

    def run(cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hermes_integration", cmd], env=env, capture_output=True,
                              text=True, timeout=30)

    reg = run("register")
    assert reg.returncode == 0, reg.stderr
    assert json.loads(reg.stdout)["endpoint"] == "http://127.0.0.1:8123"
    assert (tmp_path / "hermes.json").stat().st_mode & 0o077 == 0
    status = run("status")
    assert status.returncode == 0 and json.loads(status.stdout)["registered"] is True
    assert run("unregister").returncode == 0 and fake.components == {}
    assert run("status").returncode == 1
    down = subprocess.run([sys.executable, "-m", "hermes_integration", "status"], capture_output=True, text=True,
                          env={**env, "HERMES_URL": f"http://127.0.0.1:{free_port()}"}, timeout=30)
    assert down.returncode == 2 and json.loads(down.stdout)["reachable"] is False
