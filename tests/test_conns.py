"""Connection guards on a real `python -m rhetor` (the guards live in the uvicorn protocols `_serve` installs):
slow heads and stalled bodies are closed, a connection cap answers 503, a closed stalled stream gives its
memory back, and WebSocket messages obey the HTTP body cap (ERROR + close 1009) and a per-socket in-flight cap.
Timeouts are set short through the environment so the tests stay quick."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.fakes.server import free_port

LIMIT = 100_000  # RHETOR_MAX_BODY_BYTES of the guarded server


@contextmanager
def _serve(tmp: Path, **env: str) -> Iterator[tuple[int, psutil.Process]]:
    port = free_port()
    full = {**os.environ, "RHETOR_DATA_DIR": str(tmp), "RHETOR_PORT": str(port), "OLLAMA_HOST": "http://127.0.0.1:9",
            "RHETOR_SHUTDOWN_GRACE_S": "1", **env}
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=full, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "rhetor did not start"
            time.sleep(0.1)
        yield port, psutil.Process(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, psutil.Process]]:
    with _serve(tmp_path_factory.mktemp("guarded"), RHETOR_HEADER_TIMEOUT_S="1", RHETOR_BODY_IDLE_TIMEOUT_S="1",
                RHETOR_MAX_CONNECTIONS="40", RHETOR_MAX_BODY_BYTES=str(LIMIT), RHETOR_WS_MAX_INFLIGHT="3",
                RHETOR_SIMULATED_DELAY_SCALE="1") as server:
        yield server


def _dribble(port: int, head: bytes, n: int, seconds: float) -> list[bytes]:
    """n sockets send `head`, then one byte every 0.25 s for `seconds`; returns what each one received."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for s in socks:
        s.sendall(head)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s in socks:
            try:
                s.sendall(b"X")
            except OSError:
                pass
        time.sleep(0.25)
    got = []
    for s in socks:
        s.settimeout(0.5)
        try:
            got.append(s.recv(4096))
        except (TimeoutError, OSError):
            got.append(b"<still open>")
        s.close()
    return got


def test_slow_request_heads_are_closed_with_408(guarded: tuple[int, psutil.Process]) -> None:
    port, proc = guarded
    before = proc.num_fds()
    got = _dribble(port, b"GET /health HTTP/1.1\r\nHost: x\r\n", 30, 2.5)
    assert all(g.startswith(b"HTTP/1.1 408 ") for g in got), {g[:40] for g in got}
    assert b"request head not received within 1 s" in got[0]
    assert proc.num_fds() <= before + 3  # every slow socket's descriptor was released


def test_an_endless_request_head_gets_431(guarded: tuple[int, psutil.Process]) -> None:
    port, _ = guarded
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        line = b"x-filler: " + b"a" * 1000 + b"\r\n"
        with contextlib.suppress(OSError):  # the server may close while headers are still being sent
            for _ in range(80):  # 80 KB of headers, never ended: over the 64 KiB bound
                s.sendall(line)
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 431 ")
    ok = httpx.get(f"http://127.0.0.1:{port}/health", headers={"x-filler": "a" * 8000})
    assert ok.status_code == 200  # a large head within the bound is served


def test_stalled_bodies_are_closed_with_408(guarded: tuple[int, psutil.Process]) -> None:
    port, _ = guarded
    head = b"POST /api/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    got = _dribble(port, head, 20, 2.5)  # a byte every 0.25 s is not progress
    assert all(g.startswith(b"HTTP/1.1 408 ") for g in got), {g[:40] for g in got}
    assert b"request body stalled" in got[0]
    # a body that keeps moving is served
    r = httpx.post(f"http://127.0.0.1:{port}/api/v1/chat", json={"message": "hi", "provider_id": "simulated",
                                                                  "model_id": "simulated-fast"}, timeout=10)
    assert r.status_code == 200 and r.json()["simulated"] is True


def test_a_silent_connection_is_closed(guarded: tuple[int, psutil.Process]) -> None:
    port, _ = guarded
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(5)
        t0 = time.monotonic()
        assert s.recv(100) == b""  # closed, nothing owed: nothing was asked
        assert time.monotonic() - t0 < 3


def test_connections_beyond_the_cap_get_503(guarded: tuple[int, psutil.Process]) -> None:
    port, _ = guarded
    url = f"http://127.0.0.1:{port}/health"
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(45)]
    try:
        r = httpx.get(url, timeout=5)
        assert r.status_code == 503 and r.text == "Service Unavailable"
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    assert httpx.get(url, timeout=5).status_code == 200


def test_a_closed_stalled_stream_gives_its_memory_back(tmp_path: Path) -> None:
    body = json.dumps({"message": "y" * 2_000_000, "provider_id": "simulated", "model_id": "simulated-fast",
                       "context_id": "stalled"}).encode()
    request = (b"POST /api/v1/chat/stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
    with _serve(tmp_path, RHETOR_SIMULATED_DELAY_SCALE="0") as (port, proc):
        def rss() -> float:
            return float(proc.memory_info().rss) / 2**20

        baseline = 0.0
        for i in range(4):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(request)
            time.sleep(1.0)  # the server fills the socket, then waits for a reader that never comes
            cpu = sum(proc.cpu_times()[:2])
            time.sleep(0.5)
            assert sum(proc.cpu_times()[:2]) - cpu < 0.1  # paused by flow control, not spinning
            s.close()
            time.sleep(1.0)
            if i == 0:
                baseline = rss()
        # before the fix each closed stream ran to its end after the client left, keeping ~15 MB resident
        assert rss() - baseline < 8, f"RSS grew {rss() - baseline:.1f} MB over three closed stalled streams"
        turns = httpx.get(f"http://127.0.0.1:{port}/api/v1/contexts/stalled", timeout=10).json()
        assert "cancelled" in json.dumps(turns)  # the turns were recorded as cancelled, i.e. stopped early


async def _ws(port: int) -> ClientConnection:
    return await connect(f"ws://127.0.0.1:{port}/ws", max_size=None)


async def _oversized(port: int, frame: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    ws = await _ws(port)
    await ws.send(json.dumps(frame))
    reply = json.loads(await ws.recv())
    with pytest.raises(ConnectionClosed):
        await ws.recv()
    await ws.close()
    return reply, ws.close_code


def test_an_oversized_flat_frame_gets_error_then_1009(guarded: tuple[int, psutil.Process]) -> None:
    port, _ = guarded
    for size in (LIMIT + 1000, 17_000_000):  # just over the HTTP body cap, and over uvicorn's own 16 MiB
        reply, code = asyncio.run(_oversized(port, {"type": "GENERATE", "request_id": "big", "prompt": "x" * size}))
        assert reply["type"] == "ERROR" and reply["request_id"] is None
        assert reply["error_type"] == "payload_too_large" and "RHETOR_MAX_BODY_BYTES" in reply["error"]
        assert code == 1009


def test_an_oversized_envelope_frame_gets_an_envelope_error_then_1009(guarded: tuple[int, psutil.Process]) -> None:
    port, _ = guarded

    async def run() -> tuple[dict[str, Any], int | None]:
        ws = await _ws(port)
        await ws.send(json.dumps({"type": "REGISTER", "source": "HEPHAESTUS", "payload": {"clientId": "t"}}))
        assert json.loads(await ws.recv())["payload"]["status"] == "registered"
        await ws.send(json.dumps({"type": "LLM_REQUEST", "payload": {"message": "x" * (LIMIT * 2)}}))
        reply = json.loads(await ws.recv())
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        return reply, ws.close_code

    reply, code = asyncio.run(run())
    assert reply["type"] == "ERROR" and "request_id" not in reply
    assert reply["payload"]["error_type"] == "payload_too_large" and code == 1009


def test_requests_beyond_the_in_flight_cap_get_error_and_the_socket_stays(guarded: tuple[int, psutil.Process]) -> None:
    port, _ = guarded

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ws = await _ws(port)
        for i in range(5):  # slow streams: the first three are still running when the last two arrive
            await ws.send(json.dumps({"type": "STREAM", "request_id": f"r{i}", "prompt": "hello",
                                      "provider": "simulated", "model": "simulated-advanced"}))
        await ws.send(json.dumps({"type": "LLM_REQUEST", "payload": {"message": "hi", "context": "c"}}))
        await ws.send(json.dumps({"type": "PING", "request_id": "p"}))
        flat: list[dict[str, Any]] = []
        envelope: list[dict[str, Any]] = []
        while True:
            m = json.loads(await ws.recv())
            if m["type"] == "PONG":
                break
            if m["type"] == "ERROR":
                (envelope if "payload" in m else flat).append(m)
        await ws.close()
        return flat, envelope

    flat, envelope = asyncio.run(run())
    assert [e["request_id"] for e in flat] == ["r3", "r4"]
    assert all(e["error_type"] == "too_many_requests" and "RHETOR_WS_MAX_INFLIGHT" in e["error"] for e in flat)
    assert len(envelope) == 1 and envelope[0]["payload"]["error_type"] == "too_many_requests"
