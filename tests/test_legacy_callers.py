"""Each caller's flow from the contracts, end to end against a real `python -m rhetor` process on a free port:
the Hephaestus chat tab, Terma (April: HTTP then the WebSocket fallback), tekton-llm-client (HTTP and the
flat WebSocket) and the legacy /stream SSE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.fakes.server import free_port


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("callers")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(RHETOR_PORT=str(port), RHETOR_DATA_DIR=str(data), RHETOR_SIMULATED_DELAY_SCALE="0.2",
               RHETOR_HERMES="0", OLLAMA_HOST="http://127.0.0.1:9", RHETOR_TASK_CONFIG="")
    log = (Path(data) / "log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "rhetor did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        log.close()


def ws_at(url: str, path: str = "/ws") -> ClientConnection:
    return connect(url.replace("http://", "ws://") + path, open_timeout=10)


def recv(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=15))
    return data


def test_hephaestus_chat_tab(process: str) -> None:
    with ws_at(process) as ws:
        ws.send(json.dumps({"type": "REGISTER", "source": "HEPHAESTUS", "target": "LLM_ADAPTER", "payload": {
            "clientId": "hephaestus-ui", "clientType": "ui", "supportedContexts": ["ergon", "awt-team", "agora"]}}))
        reg = recv(ws)
        # hermes-connector.js shows any RESPONSE with payload.message as a chat bubble: there must be none
        assert reg["type"] == "RESPONSE" and "message" not in reg["payload"]
        ws.send(json.dumps({"type": "LLM_REQUEST", "source": "HEPHAESTUS", "target": "LLM_ADAPTER", "payload": {
            "message": "hello ergon", "context": "ergon", "streaming": True,
            "options": {"temperature": 0.7, "max_tokens": 4000}}}))
        text, typing, done = "", [], False
        while True:
            f = recv(ws)
            p = f["payload"]
            assert f["type"] != "ERROR", p
            if f["type"] == "UPDATE" and p.get("chunk"):  # the connector's dispatch order
                assert p["context"] == "ergon" and not done
                text += p["chunk"]
            elif f["type"] == "UPDATE" and p.get("done"):
                done = True
            elif f["type"] == "UPDATE" and "isTyping" in p:
                typing.append(p["isTyping"])
                if not p["isTyping"]:
                    break
        assert typing == [True, False] and done
        assert text.startswith('I received your message: "hello ergon"') and "Ergon - Tekton AI" in text


def test_terma_april(process: str) -> None:
    r = httpx.post(f"{process}/message", json={"message": "ls -la?", "context_id": "terma", "streaming": False,
                                               "options": {"model": "claude-3-sonnet-20240229", "provider": "claude",
                                                           "temperature": 0.7, "max_tokens": 500}}, timeout=30)
    assert r.status_code == 200 and r.json()["message"]  # keyless: anthropic is skipped, simulated answers
    assert "providers" in httpx.get(f"{process}/providers").json()
    with ws_at(process) as ws:  # the WebSocket fallback
        ws.send(json.dumps({"type": "REGISTER", "source": "TERMA",
                            "payload": {"client_id": "terma-1", "capabilities": ["terminal"]}}))
        first = recv(ws)
        assert first["type"] == "RESPONSE" and "registered" in first["payload"]["status"]
        ws.send(json.dumps({"type": "LLM_REQUEST", "source": "TERMA",
                            "payload": {"message": "help", "context": "terma", "streaming": False}}))
        while True:
            f = recv(ws)
            assert f["type"] != "ERROR"
            if f["type"] == "RESPONSE":
                assert f["payload"]["message"].startswith('I received your message: "help"')
                assert f["payload"]["context"] == "terma"
                break


def test_tekton_llm_client_http(process: str) -> None:
    with httpx.Client(base_url=process, timeout=30) as c:
        assert c.get("/api/v1/health").status_code == 200
        providers = c.get("/api/v1/providers").json()["providers"]
        assert providers["simulated"]["default_model"] == "simulated-standard"
        r = c.post("/api/v1/chat", json={
            "messages": [{"role": "user", "content": "hello"}], "context_id": "ergon", "provider_id": "simulated",
            "streaming": False, "options": {"temperature": 0.1, "fallback_provider": None, "fallback_model": None,
                                            "max_tokens": 50},
            "model_id": "simulated-standard", "system_prompt": "be brief"}).json()
        assert r["content"] and {"model", "provider", "timestamp", "finish_reason", "usage"} <= set(r)
        with c.stream("POST", "/api/v1/chat/stream", json={"message": "s", "provider_id": "simulated",
                                                           "model_id": "simulated-fast"}) as s:
            lines = [line[6:] for line in s.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "[DONE]" and all({"chunk", "model", "provider", "timestamp", "done"} <= set(json.loads(x))
                                             for x in lines[:-1])


def test_tekton_llm_client_websocket(process: str) -> None:
    with ws_at(process) as ws:
        ws.send(json.dumps({"type": "REGISTER", "component_id": "ergon", "capabilities": ["chat"]}))
        assert any(recv(ws)["type"] == "REGISTER_ACK" for _ in range(1))
        ws.send(json.dumps({"type": "STREAM", "request_id": "s1", "prompt": "hi", "context_id": "ergon:ws",
                            "provider_id": "simulated", "model_id": "simulated-fast"}))
        chunks = []
        while not chunks or not chunks[-1]["done"]:
            f = recv(ws)
            assert f["type"] == "CHUNK" and f["request_id"] == "s1"
            chunks.append(f)
        ws.send(json.dumps({"type": "CHAT_STREAM", "request_id": "long", "provider_id": "simulated",
                            "model_id": "simulated-advanced", "messages": [{"role": "user", "content": "long"}]}))
        assert recv(ws)["type"] == "CHUNK"
        ws.send(json.dumps({"type": "CANCEL", "request_id": "long"}))
        while True:
            f = recv(ws)
            if f.get("done"):
                assert f["finish_reason"] == "cancelled"
                break
        ws.send(json.dumps({"type": "PING", "request_id": "p"}))
        assert recv(ws)["type"] == "PONG"


def test_legacy_stream_sse(process: str) -> None:
    with httpx.stream("POST", f"{process}/stream", json={"message": "sse", "context_id": "ergon:sse"},
                      timeout=30) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[0] == "event: message" and "data: [DONE]" not in lines
    frames = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert frames[-1]["done"] is True and frames[-1]["context"] == "ergon:sse"
    assert httpx.get(f"{process}/api/v1/contexts/ergon:sse").json()["total"] == 2
