"""The envelope protocol on /ws and /, beside the flat protocol on the same socket."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect


def recv(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return data


def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    ws.send(json.dumps(frame))


def collect_answer(ws: ClientConnection) -> list[dict[str, Any]]:
    """Frames of one envelope answer, from typing-on to typing-off."""
    frames = [recv(ws)]
    assert frames[0]["type"] == "UPDATE" and frames[0]["payload"]["isTyping"] is True
    while not (frames[-1]["type"] == "UPDATE" and frames[-1]["payload"].get("isTyping") is False):
        frames.append(recv(ws))
    return frames


def test_register_status_and_streamed_request(simulated_rhetor: str) -> None:
    with connect(simulated_rhetor.replace("http", "ws") + "/ws") as ws:
        send(ws, {"type": "REGISTER", "source": "HEPHAESTUS", "target": "LLM_ADAPTER",
                  "payload": {"clientId": "h1", "clientType": "ui", "supportedContexts": ["ergon"]}})
        reg = recv(ws)
        assert reg["type"] == "RESPONSE" and reg["source"] == "SYSTEM" and reg["target"] == "HEPHAESTUS"
        assert reg["payload"]["status"] == "registered" and "message" not in reg["payload"]
        send(ws, {"type": "STATUS", "source": "HEPHAESTUS", "payload": {}})
        st = recv(ws)["payload"]
        assert st["status"] == "ok" and st["service"] == "rhetor" and st["providers"]["simulated"] is True
        send(ws, {"type": "CHAT_REQUEST", "source": "HEPHAESTUS", "payload": {
            "messages": [{"role": "user", "content": "a"}], "context": "ergon:chat", "streaming": False}})
        frames = collect_answer(ws)
        assert [f["type"] for f in frames] == ["UPDATE", "RESPONSE", "UPDATE"]
        assert frames[1]["payload"]["context"] == "ergon:chat" and frames[1]["payload"]["message"]


def test_errors_keep_the_socket_and_flat_frames_still_work(simulated_rhetor: str) -> None:
    with connect(simulated_rhetor.replace("http", "ws") + "/") as ws:  # the adapter's clients used the root
        send(ws, {"type": "WHATEVER", "source": "X", "payload": {"context": "c"}})
        unknown = recv(ws)
        assert unknown["type"] == "ERROR" and "WHATEVER" in unknown["payload"]["error"]
        send(ws, {"type": "LLM_REQUEST", "payload": {"context": "c"}})  # no message
        missing = recv(ws)
        assert missing["type"] == "ERROR" and missing["payload"]["context"] == "c"
        send(ws, {"type": "LLM_REQUEST", "payload": {"message": "x", "context": "c", "streaming": False,
                                                     "options": {"provider": "simulated",
                                                                 "model": "simulated-fail-400"}}})
        failed = collect_answer(ws)
        assert [f["type"] for f in failed] == ["UPDATE", "ERROR", "UPDATE"]
        assert failed[1]["payload"]["error"] and failed[1]["payload"]["context"] == "c"
        send(ws, {"type": "PING", "request_id": "p"})
        assert recv(ws) == {**recv_like("PONG", "p"), "timestamp": ANY}
        send(ws, {"type": "LLM_REQUEST", "payload": {"message": "still here", "streaming": True}})
        frames = collect_answer(ws)
        chunks = [f for f in frames if f["payload"].get("chunk")]
        assert chunks and all(f["payload"]["context"] == "default" for f in chunks)
        done = [f for f in frames if f["payload"].get("done")]
        assert len(done) == 1 and frames.index(done[0]) == len(frames) - 2


class _Any:
    def __eq__(self, other: object) -> bool:
        return True


ANY = _Any()


def recv_like(kind: str, rid: str) -> dict[str, Any]:
    return {"type": kind, "request_id": rid}
