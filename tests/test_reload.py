"""Live reload against a real `python -m rhetor`: POST /api/v1/admin/reload (admin key) and SIGHUP re-read tasks.json
while a stream is in flight (it completes on the old route), a changed route takes effect at once, a bad file is
refused with `check-config`'s own message (400 on the route, a log line on SIGHUP) and the running config keeps
serving; under `--workers 2` one POST reloads every worker."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.server import free_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "admin-key-for-reload-tests"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def routes(chat_model: str, **extra: Any) -> str:
    return json.dumps({"default": {"provider": "simulated", "model": "simulated-fast"},
                       "chat": {"provider": "simulated", "model": chat_model},
                       "slow": {"provider": "simulated", "model": "simulated-advanced"}, **extra})


def wait_for(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        time.sleep(0.1)
    return got


def _ready(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "rhetor exited at start"
    try:
        return httpx.get(url + "/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    workers = getattr(request, "param", 1)
    tasks = tmp_path / "tasks.json"
    tasks.write_text(routes("simulated-standard"))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(RHETOR_DATA_DIR=str(tmp_path / "data"), RHETOR_PORT=str(free_port()), RHETOR_TASK_CONFIG=str(tasks),
               RHETOR_ADMIN_KEY=ADMIN, RHETOR_SIMULATED_DELAY_SCALE="0.3", OLLAMA_HOST="http://127.0.0.1:9",
               RHETOR_HERMES="0", RHETOR_LOG_FORMAT="text", TMPDIR=str(tmp_path))
    log = tmp_path / "rhetor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rhetor", "--workers", str(workers)], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{env['RHETOR_PORT']}"
    try:
        wait_for(lambda: _ready(url, proc), what="ready")
        yield url, proc, tasks
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def model_of(url: str, task: str = "chat") -> str:
    with httpx.Client(timeout=15) as c:  # a fresh connection: under --workers, any worker may answer
        r = c.post(url + "/api/v1/chat", json={"message": "which model?", "task_type": task})
    assert r.status_code == 200, r.text
    model: str = r.json()["model"]
    return model


def check_config_message(path: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "rhetor", "check-config", str(path)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "RHETOR_HERMES": "0"}, timeout=60)
    assert done.returncode == 2
    return done.stderr.strip().removeprefix("rhetor: ")


def slow_stream(url: str, started: threading.Event) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as c, c.stream("POST", url + "/api/v1/chat/stream",
                                                 json={"message": "long", "task_type": "slow"}) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                frames.append(json.loads(line[6:]))
                started.set()
    return frames


def test_reload_route_swaps_routes_live_and_refuses_a_bad_file(
        served: tuple[str, subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    url, _, tasks = served
    assert model_of(url) == "simulated-standard"
    assert httpx.post(url + "/api/v1/admin/reload", timeout=10).status_code == 401  # the admin key is required

    # A stream in flight on a route the reload removes: it completes; the changed route serves the next request.
    started, out = threading.Event(), []
    streamer = threading.Thread(target=lambda: out.append(slow_stream(url, started)))
    streamer.start()
    assert started.wait(20)
    tasks.write_text(json.dumps({"default": {"provider": "simulated", "model": "simulated-fast"},
                                 "chat": {"provider": "simulated", "model": "simulated-advanced"}}))
    r = httpx.post(url + "/api/v1/admin/reload", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "reloaded" and r.json()["generation"] == 1 and r.json()["routes"] == 2
    assert model_of(url) == "simulated-advanced"
    streamer.join(30)
    assert out and out[0][-1]["done"] is True and not out[0][-1].get("error"), out[0][-1:]
    assert out[0][-1]["model"] == "simulated-advanced"

    # A bad file: 400 with exactly check-config's message; the running config keeps serving.
    tasks.write_text(routes("simulated-fast", broken={"provider": "nosuch", "model": "x"}))
    expected = check_config_message(tasks)
    r = httpx.post(url + "/api/v1/admin/reload", headers=AUTH, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == {"type": "invalid_config", "message": expected} and "nosuch" in expected
    assert model_of(url) == "simulated-advanced"
    status = httpx.get(url + "/api/v1/admin/reload", headers=AUTH, timeout=10).json()
    assert status["generation"] == 1 and status["last"]["ok"] is False and status["last"]["error"] == expected

    tasks.write_text("{ not json")
    r = httpx.post(url + "/api/v1/admin/reload", headers=AUTH, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["message"] == check_config_message(tasks)
    assert model_of(url) == "simulated-advanced"


def test_sighup_reloads_and_logs_a_refusal(served: tuple[str, subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    url, proc, tasks = served
    tasks.write_text(routes("simulated-fast"))
    proc.send_signal(signal.SIGHUP)
    wait_for(lambda: model_of(url) == "simulated-fast", what="the SIGHUP reload")

    tasks.write_text(routes("simulated-standard", broken={"provider": "nosuch", "model": "x"}))
    expected = check_config_message(tasks)
    proc.send_signal(signal.SIGHUP)
    log = tmp_path / "rhetor.log"
    wait_for(lambda: expected in log.read_text(), what="the refusal logged")
    assert "reload refused, the running configuration stays" in log.read_text()
    assert proc.poll() is None and model_of(url) == "simulated-fast"


@pytest.mark.parametrize("served", [2], indirect=True)
def test_one_post_reloads_every_worker(served: tuple[str, subprocess.Popen[bytes], Path]) -> None:
    url, _, tasks = served
    pids: set[int] = set()
    for _ in range(200):  # both workers serve: fresh connections land on either (SO_REUSEPORT)
        with httpx.Client(timeout=10) as c:
            pids.add(c.get(url + "/health").json()["details"]["pid"])
        if len(pids) == 2:
            break
    assert len(pids) == 2
    tasks.write_text(routes("simulated-fast"))
    r = httpx.post(url + "/api/v1/admin/reload", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.json()["workers"] == 2, r.text
    time.sleep(0.5)  # the supervisor's SIGHUP reaches the other worker
    # 24 fresh connections, spread over both workers: every one is served by the new route
    assert {model_of(url) for _ in range(24)} == {"simulated-fast"}


@pytest.mark.skipif(importlib.util.find_spec("rhetor.storage.redis_bus") is None,
                    reason="the change bus (rhetor/storage/redis_bus.py) has not landed")
def test_a_reload_on_one_replica_reaches_the_other_through_redis(
        tmp_path: Path, pg_url: str, redis_prefix: tuple[str, str]) -> None:
    redis_url, prefix = redis_prefix
    tasks = tmp_path / "tasks.json"  # the same file on both (in production: the same file deployed to each host)
    tasks.write_text(routes("simulated-standard"))
    procs: list[subprocess.Popen[bytes]] = []
    urls = []
    try:
        for name in ("a", "b"):
            env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
            env.update(RHETOR_DATA_DIR=str(tmp_path / name), RHETOR_PORT=str(free_port()), RHETOR_ADMIN_KEY=ADMIN,
                       RHETOR_TASK_CONFIG=str(tasks), RHETOR_DATABASE_URL=pg_url, RHETOR_REDIS_URL=redis_url,
                       RHETOR_REDIS_PREFIX=prefix, RHETOR_SIMULATED_DELAY_SCALE="0", RHETOR_HERMES="0",
                       OLLAMA_HOST="http://127.0.0.1:9")
            with (tmp_path / f"{name}.log").open("wb") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=out,
                                              stderr=subprocess.STDOUT, cwd=ROOT))
            urls.append(f"http://127.0.0.1:{env['RHETOR_PORT']}")
        for url, proc in zip(urls, procs, strict=True):
            wait_for(lambda u=url, p=proc: _ready(u, p), what="ready")
        a, b = urls
        assert model_of(b) == "simulated-standard"
        tasks.write_text(routes("simulated-fast"))
        assert httpx.post(a + "/api/v1/admin/reload", headers=AUTH, timeout=10).status_code == 200
        wait_for(lambda: model_of(b) == "simulated-fast", timeout=5, what="B reloaded through the bus")
        status = httpx.get(b + "/api/v1/admin/reload", headers=AUTH, timeout=10).json()
        assert status["generation"] == 1 and status["last"]["origin"] == "remote"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_providers_and_prices_reload_while_a_stream_runs_on_the_old_deployment(tmp_path: Path) -> None:
    """In process, against two fake OpenAI servers: the providers file moves deployment `oa` from the first to the
    second; a stream already running on the first finishes there, the next requests go to the second, and the
    price table every holder shares is the new one."""
    from rhetor.api.app import create_app
    from tests.conftest import test_settings
    from tests.fakes.openai import running_fake_openai
    from tests.fakes.server import serve_app

    providers, prices, tasks = tmp_path / "providers.yaml", tmp_path / "prices.json", tmp_path / "tasks.json"

    def deploy(base_url: str) -> None:
        providers.write_text(f"deployments:\n  - name: oa\n    kind: openai\n    base_url: {base_url}\n"
                             f"    api_key: sk-test\n    models: [gpt-5.4]\n")

    tasks.write_text(json.dumps({"default": {"targets": [{"provider": "oa", "model": "gpt-5.4", "retries": 0}],
                                             "simulated_fallback": False}}))
    prices.write_text(json.dumps({"openai": {"gpt-5.4": {"input": 1.0, "output": 2.0}}}))
    with running_fake_openai() as first, running_fake_openai() as second:
        deploy(first.base_url)
        first.reply_text = " ".join(f"w{i}" for i in range(12))
        first.chunk_delay = 0.1
        app = create_app(test_settings(tmp_path, providers_file=providers, prices_file=prices, task_config=tasks,
                                       admin_key=ADMIN))
        with serve_app(app, lifespan="on") as url:
            started, out = threading.Event(), []
            streamer = threading.Thread(target=lambda: out.append(slow_stream(url, started)))
            streamer.start()
            assert started.wait(10)
            deploy(second.base_url)
            prices.write_text(json.dumps({"openai": {"gpt-5.4": {"input": 5.0, "output": 6.0}}}))
            r = httpx.post(url + "/api/v1/admin/reload", headers=AUTH, timeout=10)
            assert r.status_code == 200 and r.json()["deployments"] == 1, r.text
            assert httpx.post(url + "/api/v1/chat", json={"message": "after"}, timeout=10).status_code == 200
            assert len(second.requests) == 1 and len(first.requests) == 1  # the stream's, and only it
            price = app.state.governance.prices.lookup("openai", "gpt-5.4")
            assert price is not None and (price.input, price.output) == (5.0, 6.0)
            streamer.join(20)
            assert out, "the stream never ended"
            text = "".join(f.get("chunk") or "" for f in out[0])
            assert out[0][-1]["done"] is True and not out[0][-1].get("error") and text.split() == [
                f"w{i}" for i in range(12)]
