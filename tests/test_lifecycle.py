"""scripts/launch, status and stop as a Tekton launcher runs them: real processes, a pidfile under
RHETOR_RUN_DIR, the fake Hermes watching registration, and a process that ignores /shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.fakes.hermes import FakeHermes
from tests.fakes.server import free_port, serve_app

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def hermes() -> Iterator[tuple[FakeHermes, str]]:
    fake = FakeHermes()
    with serve_app(fake.app) as url:
        yield fake, url


@pytest.fixture
def env(tmp_path: Path, hermes: tuple[FakeHermes, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    base.update(RHETOR_RUN_DIR=str(tmp_path / "run"), RHETOR_DATA_DIR=str(tmp_path / "data"),
                RHETOR_PORT=str(free_port()), RHETOR_SIMULATED_DELAY_SCALE="0.3", HERMES_URL=hermes[1],
                RHETOR_HERMES_HEARTBEAT_S="0.2", OLLAMA_HOST="http://127.0.0.1:9", RHETOR_SHUTDOWN_GRACE_S="5")
    return base


def script(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / name), *args], env=env, capture_output=True, text=True,
                          timeout=90)


def state(env: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((Path(env["RHETOR_RUN_DIR"]) / "rhetor.json").read_text())
    return data


def wait_for(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_launch_status_stop_during_a_stream(env: dict[str, str], hermes: tuple[FakeHermes, str]) -> None:
    fake, _ = hermes
    first = script("launch", env)
    assert first.returncode == 0, first.stderr
    pid, port = state(env)["pid"], state(env)["port"]
    assert port == int(env["RHETOR_PORT"])
    assert (Path(env["RHETOR_RUN_DIR"]) / "rhetor.pid").read_text().strip() == str(pid)
    try:
        again = script("launch", env)
        assert again.returncode == 0 and "already running" in again.stdout and state(env)["pid"] == pid
        status = script("status", env)
        assert status.returncode == 0 and f"pid {pid}" in status.stdout and '"component": "rhetor"' in status.stdout
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: any(c["endpoint"] == url for c in fake.components.values()))

        frames: list[str] = []
        stopped: list[subprocess.CompletedProcess[str]] = []
        with httpx.stream("POST", f"{url}/api/v1/chat/stream", timeout=30, json={
                "message": "keep going", "context_id": "lifecycle", "provider_id": "simulated",
                "model_id": "simulated-standard"}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    if not frames:
                        stopper = threading.Thread(target=lambda: stopped.append(script("stop", env)))
                        stopper.start()
                    frames.append(line[6:])
        stopper.join(60)
        assert frames[-1] == "[DONE]" and json.loads(frames[-2])["finish_reason"] == "stop"  # the stream completed
        assert stopped[0].returncode == 0 and "POST /shutdown: 202" in stopped[0].stdout
        assert "SIGKILL" not in stopped[0].stdout
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert fake.components == {} and "unregister" in fake.kinds()
        assert any(s["status"] == "shutting_down" for s in fake.statuses)
        assert script("status", env).returncode == 3
        # the context was saved: a fresh Rhetor on the same data dir shows the whole turn
        assert script("launch", env).returncode == 0
        page = httpx.get(f"http://127.0.0.1:{state(env)['port']}/api/v1/contexts/lifecycle").json()
        assert [m["metadata"]["status"] for m in page["messages"]] == ["complete", "complete"]
    finally:
        script("stop", env)


def test_port_taken_by_something_else(env: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", int(env["RHETOR_PORT"])))
        squatter.listen()
        refused = script("launch", env)
        assert refused.returncode == 1 and "in use by something that is not a healthy Rhetor" in refused.stderr
        auto = script("launch", env, "--port", "auto")
        try:
            assert auto.returncode == 0, auto.stderr
            port = state(env)["port"]
            assert port != int(env["RHETOR_PORT"]) and httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        finally:
            assert script("stop", env).returncode == 0


STUBBORN = """
import signal, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
signal.signal(signal.SIGTERM, signal.SIG_IGN)
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        self.send_response(404); self.end_headers()
    def log_message(self, *a): pass
server = HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("up", flush=True)
server.serve_forever()
"""


def test_stop_escalates_when_shutdown_and_sigterm_are_ignored(env: dict[str, str]) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", STUBBORN, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        run = Path(env["RHETOR_RUN_DIR"])
        run.mkdir(parents=True)
        (run / "rhetor.pid").write_text(f"{proc.pid}\n")
        (run / "rhetor.json").write_text(json.dumps({"pid": proc.pid, "port": port, "host": "127.0.0.1",
                                                     "create_time": psutil.Process(proc.pid).create_time()}))
        out = script("stop", env, "--grace", "0.5")
        assert out.returncode == 0, out.stderr
        assert "POST /shutdown: 404" in out.stdout and "SIGTERM" in out.stdout and "SIGKILL" in out.stdout
        assert proc.wait(5) == -signal.SIGKILL
        assert not (run / "rhetor.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_stop_never_signals_a_recycled_pid(env: dict[str, str]) -> None:
    run = Path(env["RHETOR_RUN_DIR"])
    run.mkdir(parents=True)
    (run / "rhetor.pid").write_text(f"{os.getpid()}\n")  # our own pid, but a different start time
    (run / "rhetor.json").write_text(json.dumps({"pid": os.getpid(), "port": 1, "host": "127.0.0.1",
                                                 "create_time": 1.0}))
    out = script("stop", env)
    assert out.returncode == 0 and "stale pidfile" in out.stdout and not (run / "rhetor.pid").exists()
