"""Shutdown never truncates silently: a real `python -m rhetor` process, slow simulated streams on every
protocol, SIGTERM with RHETOR_SHUTDOWN_GRACE_S=1. Each stream must end with its protocol's final error frame,
be stored as `cancelled`, and the log must hold no traceback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.fakes.server import free_port

SLOW = {"provider": "simulated", "model": "simulated-advanced"}  # ~8 s of chunks at delay scale 1


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, "rhetor exited at start"
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "rhetor did not start"
        time.sleep(0.1)


def sse_lines(url: str, path: str, body: dict[str, Any], started: threading.Event,
              headers: dict[str, str] | None = None) -> list[str]:
    """Every non-empty SSE line until the server ends the response."""
    lines: list[str] = []
    try:
        with httpx.stream("POST", url + path, json=body, headers=headers, timeout=30) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                    if '"chunk":"' in line or "text_delta" in line or '"content":"' in line:
                        started.set()
    except httpx.TransportError:
        lines.append("<truncated>")  # the body ended without its final frame
    return lines


def ws_frames(url: str, first: dict[str, Any], started: threading.Event,
              last: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Frames until `last(frame)` is true or the server closes the socket."""
    frames: list[dict[str, Any]] = []
    with connect(url.replace("http://", "ws://") + "/ws") as ws:
        ws.send(json.dumps(first))
        try:
            while True:
                frame = json.loads(ws.recv(timeout=30))
                frames.append(frame)
                if frame.get("chunk") or frame.get("payload", {}).get("chunk"):
                    started.set()
                if last(frame):
                    return frames
        except Exception:  # the server closed the socket before the final frame
            frames.append({"type": "<closed>"})
            return frames


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    port = free_port()
    env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_PORT": str(port),
           "RHETOR_SIMULATED_DELAY_SCALE": "1", "RHETOR_SHUTDOWN_GRACE_S": "1"}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, proc, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_past_the_grace_ends_every_stream_with_its_final_error_frame(
        slow_server: tuple[str, subprocess.Popen[bytes], Path], tmp_path: Path) -> None:
    url, proc, log = slow_server
    calls: dict[str, Callable[[threading.Event], Any]] = {
        "native": lambda ev: sse_lines(url, "/api/v1/chat/stream",
                                       {"message": "native", "context_id": "s-native", "options": SLOW}, ev),
        "legacy": lambda ev: sse_lines(url, "/stream", {"message": "legacy", "context_id": "s-legacy",
                                                        "options": SLOW}, ev),
        "openai": lambda ev: sse_lines(url, "/v1/chat/completions", {
            "model": "simulated/simulated-advanced", "stream": True,
            "messages": [{"role": "user", "content": "openai"}]}, ev),
        "anthropic": lambda ev: sse_lines(url, "/v1/messages", {
            "model": "simulated/simulated-advanced", "stream": True, "max_tokens": 500,
            "messages": [{"role": "user", "content": "anthropic"}]}, ev),
        "ws": lambda ev: ws_frames(url, {"type": "STREAM", "request_id": "r1", "prompt": "ws", "context_id": "s-ws",
                                         "options": SLOW}, ev, lambda f: f.get("done") is True),
        "envelope": lambda ev: ws_frames(url, {"type": "LLM_REQUEST", "source": "HEPHAESTUS", "payload": {
            "message": "envelope", "context": "s-env", "streaming": True, "options": SLOW}}, ev,
            lambda f: f["type"] == "UPDATE" and f["payload"].get("done") is True),
    }
    started = {name: threading.Event() for name in calls}
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = {name: pool.submit(call, started[name]) for name, call in calls.items()}
        for name, ev in started.items():
            assert ev.wait(15), f"{name} never started streaming"
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        out = {name: f.result(timeout=30) for name, f in futures.items()}
    assert proc.wait(timeout=15) == 0
    took = time.monotonic() - t0
    logged = log.read_text()
    assert "Traceback" not in logged, logged
    assert "timeout graceful shutdown exceeded" not in logged, logged
    assert took < 8, f"shutdown took {took:.1f}s with a 1 s grace"

    native = [json.loads(x[6:]) for x in out["native"] if x.startswith("data: ") and x != "data: [DONE]"]
    assert native[-1]["done"] is True and native[-1]["error_type"] == "shutdown" and native[-1]["error"]
    legacy = [json.loads(x[6:]) for x in out["legacy"] if x.startswith("data: ")]
    assert legacy[-1]["done"] is True and legacy[-1]["error_type"] == "shutdown" and legacy[-1]["error"]
    assert out["openai"][-1].startswith("data: ") and "[DONE]" not in out["openai"][-1]
    assert "error" in json.loads(out["openai"][-1][6:])
    assert out["anthropic"][-2] == "event: error"
    assert json.loads(out["anthropic"][-1][6:])["type"] == "error"
    ws = out["ws"][-1]
    assert ws["type"] == "CHUNK" and ws["done"] is True and ws["error_type"] == "shutdown"
    env_types = [f["type"] for f in out["envelope"]]
    assert "ERROR" in env_types, env_types
    assert out["envelope"][-1]["payload"]["done"] is True and out["envelope"][-1]["payload"]["error"]

    with sqlite3.connect(tmp_path / "rhetor.db") as db:
        rows = db.execute("SELECT context_id, role, status FROM messages WHERE context_id LIKE 's-%'").fetchall()
    statuses = {(cid, role): status for cid, role, status in rows}
    for cid in ("s-native", "s-legacy", "s-ws", "s-env"):
        assert statuses.get((cid, "user")) == "cancelled", (cid, rows)
        assert statuses.get((cid, "assistant")) == "cancelled", (cid, rows)  # the partial reply, kept
