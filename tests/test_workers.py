"""`python -m rhetor --workers 2` for real: both worker pids serve the one port, /metrics sums every worker's
requests, Hermes (the fake, over real HTTP) sees one registration for the group, a worker killed with -9 is
restarted, SIGTERM drains the streams in flight (none fails) and leaves no process and no run directory behind;
a bad config exits 2 before any worker starts; `scripts/launch --workers 2` / `status` / `stop` manage the group
through its pidfile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.hermes import FakeHermes
from tests.fakes.server import free_port, serve_app

ROOT = Path(__file__).resolve().parents[1]
SLOW = {"provider": "simulated", "model": "simulated-advanced"}  # ~8 s of chunks at delay scale 1


@pytest.fixture
def hermes() -> Iterator[tuple[FakeHermes, str]]:
    fake = FakeHermes()
    with serve_app(fake.app) as url:
        yield fake, url


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "PROMETHEUS_MULTIPROC_DIR"}
    (tmp / "tmp").mkdir(exist_ok=True)
    base.update(RHETOR_DATA_DIR=str(tmp / "data"), RHETOR_PORT=str(free_port()), RHETOR_SIMULATED_DELAY_SCALE="0.2",
                OLLAMA_HOST="http://127.0.0.1:9", TMPDIR=str(tmp / "tmp"), RHETOR_LOG_FORMAT="text",
                RHETOR_HERMES="0")
    base.update(extra)
    return base


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.1)


def _ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "rhetor exited at start"
    try:
        return httpx.get(url + "/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _pid(url: str) -> int:
    """The worker that answered a fresh connection (SO_REUSEPORT spreads new connections across workers)."""
    with httpx.Client(timeout=5) as c:
        body = c.get(url + "/health").json()
    pid: int = body["details"]["pid"]
    return pid


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # exited; its parent (or init) reaps it
    except psutil.NoSuchProcess:
        return True


def _samples(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics", timeout=5).text
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    return out


def _total(samples: dict[str, float], name: str, **labels: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(name + "{")
               and all(f'"{lk}": "{lv}"' in k for lk, lv in labels.items()))


def _stream(url: str, started: threading.Event) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as c, c.stream("POST", url + "/api/v1/chat/stream",
                                                 json={"message": "long", "options": SLOW}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                frames.append(json.loads(line[6:]))
                started.set()
    return frames


@pytest.mark.timeout(120)
def test_two_workers_one_port_summed_metrics_one_hermes_registration_clean_sigterm(
        tmp_path: Path, hermes: tuple[FakeHermes, str]) -> None:
    fake, hermes_url = hermes
    env = _env(tmp_path, HERMES_URL=hermes_url, RHETOR_HERMES="1", RHETOR_HERMES_HEARTBEAT_S="0.3")
    url = f"http://127.0.0.1:{env['RHETOR_PORT']}"
    log = tmp_path / "rhetor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rhetor", "--workers", "2"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_for(lambda: _ready(url, proc), what="ready")
        supervisor = psutil.Process(proc.pid)
        workers = {c.pid for c in supervisor.children()}
        assert len(workers) == 2

        # Both pids serve the one port: fresh connections land on either worker.
        seen: set[int] = set()
        health_calls = 0
        while seen != workers:
            seen.add(_pid(url))
            health_calls += 1
            assert health_calls < 200, f"only {seen} of {workers} answered"

        # /metrics sums every worker's counts, whichever worker answers the scrape. The 12 turns go to one
        # context over fresh connections (both workers): the SQLite store is shared, the conversation whole.
        for i in range(12):
            with httpx.Client(timeout=10) as c:
                r = c.post(url + "/api/v1/chat", json={"message": f"hi {i}", "context_id": "workers"})
            assert r.status_code == 200
        stored = httpx.get(url + "/api/v1/contexts/workers", timeout=10).json()["messages"]
        assert [m["content"] for m in stored if m["role"] == "user"] == [f"hi {i}" for i in range(12)]
        for _ in range(3):
            samples = _samples(url)
            assert _total(samples, "rhetor_requests_total") == 12
            assert _total(samples, "rhetor_http_requests_total", route="/health") == health_calls

        # Hermes: one registration for the group, naming the supervisor's pid and the shared port.
        wait_for(lambda: fake.kinds().count("register") >= 1, what="registration")
        registrations = [body for kind, body in fake.calls if kind == "register"]
        assert len(registrations) == 1
        meta = registrations[0]["metadata"]
        assert meta["pid"] == proc.pid and meta["workers"] == 2 and meta["port"] == int(env["RHETOR_PORT"])
        health = wait_for(lambda: (b := httpx.get(url + "/health").json())["registeredWithHermes"] and b,
                          what="/health says registered")
        assert health["details"]["workers"]["count"] == 2 and health["details"]["hermes"]["by"] == "supervisor"

        # A worker killed with -9 is restarted; the group keeps serving meanwhile.
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        assert httpx.get(url + "/health", timeout=5).status_code == 200
        fresh = wait_for(lambda: len(now := {c.pid for c in supervisor.children()} - {victim}) == 2 and now,
                         what="worker restarted")
        wait_for(lambda: _pid(url) in fresh - workers, what="the new worker serves")
        assert _total(_samples(url), "rhetor_requests_total") == 12  # the dead worker's counts stay summed

        # SIGTERM: every stream in flight finishes normally; then no process and no run directory is left.
        started = [threading.Event() for _ in range(4)]
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(_stream, url, ev) for ev in started]
            for ev in started:
                assert ev.wait(20), "a stream never started"
            proc.send_signal(signal.SIGTERM)
            results = [f.result(timeout=40) for f in futures]
        assert proc.wait(timeout=30) == 0
        for frames in results:
            assert frames[-1]["done"] is True and not frames[-1].get("error"), frames[-1]
        assert all(_gone(p) for p in fresh)
        assert list((tmp_path / "tmp").iterdir()) == []  # the run directory and its metrics files are gone
        assert fake.kinds().count("register") == 1 and fake.kinds().count("unregister") == 1
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_config_exits_2_once_before_any_worker_starts(tmp_path: Path) -> None:
    bad = tmp_path / "tasks.json"
    bad.write_text(json.dumps({"default": {"provider": "nosuch", "model": "x"}}))
    env = _env(tmp_path, RHETOR_TASK_CONFIG=str(bad))
    done = subprocess.run([sys.executable, "-m", "rhetor", "--workers", "2"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("nosuch") == 1 and "worker" not in done.stderr


def test_lifecycle_scripts_manage_the_group(tmp_path: Path) -> None:
    env = _env(tmp_path, RHETOR_RUN_DIR=str(tmp_path / "run"), RHETOR_SHUTDOWN_GRACE_S="3")

    def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / "scripts" / name), *args], env=env, capture_output=True, text=True,
                              timeout=90)

    launched = script("launch", "--workers", "2")
    assert launched.returncode == 0, launched.stdout + launched.stderr
    pid = int((tmp_path / "run" / "rhetor.pid").read_text())
    status = script("status")
    assert status.returncode == 0 and f"pid {pid}" in status.stdout
    workers = [int(p) for p in status.stdout.split("workers ", 1)[1].splitlines()[0].split()]
    assert len(workers) == 2 and all(psutil.Process(w).ppid() == pid for w in workers)
    stopped = script("stop")  # POST /shutdown reaches one worker; the supervisor stops the group
    assert stopped.returncode == 0 and "POST /shutdown: 202" in stopped.stdout and "SIGTERM" not in stopped.stdout
    assert _gone(pid) and all(_gone(w) for w in workers)
    assert script("status").returncode == 3
