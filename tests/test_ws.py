"""WebSocket `/ws`, flat protocol, through a real WebSocket client against a real Rhetor."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection, connect


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    ws.send(frame if isinstance(frame, str) else json.dumps(frame))


def recv(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=10))
    return data


def until_done(ws: ClientConnection, rid: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        f = recv(ws)
        assert f["request_id"] == rid
        frames.append(f)
        if f["type"] != "CHUNK" or f["done"]:
            return frames


def test_register_ping_generate(simulated_rhetor: str) -> None:
    with connect(ws_url(simulated_rhetor)) as ws:
        send(ws, {"type": "REGISTER", "component_id": "ergon", "capabilities": ["chat"]})
        ack = recv(ws)
        assert ack["type"] == "REGISTER_ACK" and ack["component_id"] == "ergon"
        send(ws, {"type": "PING", "request_id": "p1"})
        assert recv(ws) == {**recv_shape("PONG", "p1"), "timestamp": _any()}
        send(ws, {"type": "GENERATE", "request_id": "g1", "prompt": "hello", "context_id": "ergon:ws",
                  "provider_id": "simulated", "model_id": "simulated-fast", "system_prompt": "terse"})
        r = recv(ws)
        assert r["type"] == "RESPONSE" and r["request_id"] == "g1"
        assert r["content"].startswith('I received your message: "hello"') and r["model"] == "simulated-fast"
        send(ws, {"type": "CHAT", "request_id": "c1", "messages": [{"role": "user", "content": "a"},
              {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]})
        r = recv(ws)
        assert r["type"] == "RESPONSE" and "conversation with 3 messages" in r["content"]


class _any:
    def __eq__(self, other: object) -> bool:
        return True


def recv_shape(kind: str, rid: str) -> dict[str, Any]:
    return {"type": kind, "request_id": rid}


def test_stream_multiplexed(simulated_rhetor: str) -> None:
    with connect(ws_url(simulated_rhetor)) as ws:
        for rid in ("s1", "s2"):
            send(ws, {"type": "STREAM", "request_id": rid, "prompt": f"prompt {rid}",
                      "options": {"provider": "simulated"}})
        got: dict[str, list[dict[str, Any]]] = {"s1": [], "s2": []}
        done = set()
        while len(done) < 2:
            f = recv(ws)
            assert f["type"] == "CHUNK"
            got[f["request_id"]].append(f)
            if f["done"]:
                done.add(f["request_id"])
        for rid, frames in got.items():
            text = "".join(f["chunk"] for f in frames)
            assert text.startswith(f'I received your message: "prompt {rid}"')
            assert frames[-1]["finish_reason"] == "stop" and frames[-1]["usage"]["output_tokens"] > 0


def test_cancel_stops_stream(make_settings: Callable[..., Any], rhetor: Any) -> None:
    with rhetor(make_settings(simulated_delay_scale=1.0)) as url, connect(ws_url(url)) as ws:
        send(ws, {"type": "CHAT_STREAM", "request_id": "x", "context_id": "cancel-me",
                  "messages": [{"role": "user", "content": "long"}],
                  "provider_id": "simulated", "model_id": "simulated-advanced"})
        first = recv(ws)
        assert first["type"] == "CHUNK" and first["done"] is False
        send(ws, {"type": "CANCEL", "request_id": "x"})
        frames = [first, *until_done(ws, "x")]
        assert frames[-1]["finish_reason"] == "cancelled"
        assert len(frames) < 20  # a full simulated-advanced answer is ~100 chunks
        send(ws, {"type": "PING", "request_id": "after"})
        assert recv(ws)["type"] == "PONG"
    import httpx

    with rhetor(make_settings()) as url2:
        page = httpx.get(f"{url2}/api/v1/contexts/cancel-me").json()
        assert page["messages"][0]["metadata"]["status"] == "cancelled"


def test_bad_frames_keep_socket_open(simulated_rhetor: str) -> None:
    with connect(ws_url(simulated_rhetor)) as ws:
        for bad in ("{nope", json.dumps([1, 2]), json.dumps({"type": "WHAT", "request_id": "w"}),
                    json.dumps({"type": "GENERATE", "request_id": "g"}),
                    json.dumps({"type": "GENERATE", "request_id": "g2", "prompt": "x", "provider_id": "nosuch"}),
                    json.dumps({"type": "CANCEL", "request_id": "ghost"})):
            send(ws, bad)
            err = recv(ws)
            assert err["type"] == "ERROR" and err["error"]
        send(ws, {"type": "GENERATE", "request_id": "ok", "prompt": "still here"})
        assert recv(ws)["type"] == "RESPONSE"
