"""The command line and the process: check-config, providers, chat, refusing a bad config, SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.server import free_port


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_SIMULATED_DELAY_SCALE": "0", **env}
    return subprocess.run([sys.executable, "-m", "rhetor", *args], capture_output=True, text=True, timeout=60,
                          env=full_env)


def test_check_config_builtin(tmp_path: Path) -> None:
    r = run(["check-config"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "default" in r.stdout and "simulated" in r.stdout


def test_bad_config_named_by_check_and_refused_by_serve(tmp_path: Path) -> None:
    bad = tmp_path / "tasks.json"
    bad.write_text(json.dumps({"default": {"provider": "simulated"},
                               "chat": {"provider": "anthropic", "options": {"temperature": "warm"}}}))
    r = run(["check-config", str(bad)], tmp_path)
    assert r.returncode == 2
    assert "chat.options.temperature" in r.stderr
    served = run(["--port", str(free_port())], tmp_path, RHETOR_TASK_CONFIG=str(bad))
    assert served.returncode == 2
    assert "chat.options.temperature" in served.stderr


def test_providers_command(tmp_path: Path) -> None:
    r = run(["providers"], tmp_path, OLLAMA_HOST="http://127.0.0.1:9")
    assert r.returncode == 0
    lines = {line.split()[0]: line for line in r.stdout.splitlines()}
    assert "ANTHROPIC_API_KEY not set" in lines["anthropic"]
    assert " available" in lines["simulated"]


def test_chat_command_streams(tmp_path: Path) -> None:
    r = run(["chat", "hello there", "--provider", "simulated", "--model", "simulated-fast"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith('I received your message: "hello there"')
    assert "simulated/simulated-fast" in r.stderr


def test_sigterm_drains_inflight_stream(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_SIMULATED_DELAY_SCALE": "0.4",
           "RHETOR_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "rhetor did not start"
            time.sleep(0.1)
        frames = []
        with httpx.stream("POST", f"{url}/api/v1/chat/stream", timeout=30, json={
                "message": "drain me", "context_id": "drain", "options": {"provider": "simulated",
                                                                          "model": "simulated-standard"}}) as r:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if not frames:
                    proc.send_signal(signal.SIGTERM)
                frames.append(line[6:])
        assert frames[-1] == "[DONE]"
        assert json.loads(frames[-2])["done"] is True and json.loads(frames[-2])["finish_reason"] == "stop"
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read() if proc.stdout else ""
    assert "Traceback" not in out
