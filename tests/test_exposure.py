"""Bind and shutdown safety, through real HTTP: loopback is 127.0.0.0/8 and ::1, forwarded headers are not
trusted unless RHETOR_TRUSTED_PROXIES names the proxy, a non-loopback bind without keys or token refuses
/shutdown (and says so loudly at start), and /health without a key hides the pid and per-provider metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from rhetor.errors import ConfigError
from rhetor.settings import Settings
from tests.fakes.server import free_port


@contextmanager
def rhetor_process(tmp_path: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """`python -m rhetor` (the real uvicorn config of the CLI), reached on 127.0.0.1."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    full = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_PORT": str(port),
            "RHETOR_SIMULATED_DELAY_SCALE": "0", **env}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=full, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "rhetor did not start"
            time.sleep(0.1)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_any_127_8_address_is_loopback(make_settings: Callable[..., Settings], rhetor: Any) -> None:
    with rhetor(make_settings()) as url:
        transport = httpx.HTTPTransport(local_address="127.0.0.2")  # the caller's source address
        with httpx.Client(base_url=url, transport=transport) as c:
            r = c.post("/shutdown")
    assert r.status_code == 202, r.text


def test_forwarded_headers_are_not_trusted_by_default(tmp_path: Path) -> None:
    with rhetor_process(tmp_path) as (url, proc, _):
        # A local proxy relaying someone else: whatever X-Forwarded-For says, this is not a loopback caller.
        r = httpx.post(f"{url}/shutdown", headers={"X-Forwarded-For": "127.0.0.1"})
        assert r.status_code == 403 and "RHETOR_TRUSTED_PROXIES" in r.json()["error"]["message"]
        r = httpx.post(f"{url}/shutdown", headers={"Forwarded": "for=127.0.0.1"})
        assert r.status_code == 403
        assert httpx.get(f"{url}/ready").status_code == 200
        assert httpx.post(f"{url}/shutdown").status_code == 202  # the launcher itself, directly on loopback
        assert proc.wait(15) == 0


def test_trusted_proxies_name_the_caller(tmp_path: Path) -> None:
    with rhetor_process(tmp_path, RHETOR_TRUSTED_PROXIES="127.0.0.1") as (url, proc, _):
        r = httpx.post(f"{url}/shutdown", headers={"X-Forwarded-For": "203.0.113.7"})
        assert r.status_code == 403 and "loopback" in r.json()["error"]["message"]
        assert httpx.post(f"{url}/shutdown", headers={"X-Forwarded-For": "127.0.0.1"}).status_code == 202
        assert proc.wait(15) == 0


def test_non_loopback_bind_without_keys_or_token_warns_and_refuses_shutdown(tmp_path: Path) -> None:
    with rhetor_process(tmp_path, RHETOR_HOST="0.0.0.0") as (url, _, log):
        r = httpx.post(f"{url}/shutdown")
        assert r.status_code == 403
        assert "RHETOR_SHUTDOWN_TOKEN" in r.json()["error"]["message"]
        assert httpx.get(f"{url}/ready").status_code == 200  # still serving
    logged = log.read_text()
    assert "0.0.0.0" in logged and "RHETOR_API_KEYS" in logged and "RHETOR_SHUTDOWN_TOKEN" in logged, logged


def test_non_loopback_bind_with_a_token_accepts_shutdown(tmp_path: Path) -> None:
    with rhetor_process(tmp_path, RHETOR_HOST="0.0.0.0", RHETOR_SHUTDOWN_TOKEN="t0ken") as (url, proc, log):
        assert httpx.post(f"{url}/shutdown", headers={"X-Shutdown-Token": "t0ken"}).status_code == 202
        assert proc.wait(15) == 0
    assert "RHETOR_API_KEYS" not in log.read_text()


def test_health_without_a_key_is_trimmed_when_keys_are_configured(make_settings: Callable[..., Settings],
                                                                   rhetor: Any) -> None:
    with rhetor(make_settings(api_keys=(SecretStr("k-1"),))) as url, httpx.Client(base_url=url) as c:
        assert c.post("/api/v1/chat", headers={"x-api-key": "k-1"}, json={"message": "hi"}).status_code == 200
        bare = c.get("/health").json()
        full = c.get("/health", headers={"Authorization": "Bearer k-1"}).json()
    tekton = {"status", "component", "version", "timestamp", "uptime", "port", "registeredWithHermes", "dependencies"}
    assert tekton <= set(bare) and bare["status"] == "healthy" and bare["component"] == "rhetor"
    assert bare["providers"] == {"anthropic": False, "openai": False, "gemini": False, "ollama": False,
                                 "simulated": True}
    assert "pid" not in bare["details"] and "providers" not in bare.get("metrics", {})
    assert full["details"]["pid"] > 0 and "simulated" in full["metrics"]["providers"]


def test_health_is_whole_without_keys(simulated_rhetor: str) -> None:
    h = httpx.get(simulated_rhetor + "/health").json()
    assert h["details"]["pid"] > 0 and "providers" in h["metrics"]


def test_trusted_proxies_are_validated() -> None:
    s = Settings.from_env({"RHETOR_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,::1"})
    assert s.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match="RHETOR_TRUSTED_PROXIES"):
        Settings.from_env({"RHETOR_TRUSTED_PROXIES": "proxy.local"})
