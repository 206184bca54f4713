"""WebSocket `/ws` — the flat protocol of tekton-llm-client: frames carry `type` and `request_id`.

REGISTER→REGISTER_ACK, PING→PONG, GENERATE/CHAT→RESPONSE, STREAM/CHAT_STREAM→CHUNK…(done), CANCEL stops a
request (its upstream call is cancelled), errors are ERROR{request_id, error}. Several requests run at once
on one socket. A bad frame gets an ERROR and the socket stays open. Frames shaped like the LLM Adapter's
envelope (`payload` object, no `request_id`) go to the side protocol the app gives the socket
(`socket_router(side=...)`: rhetor.api.legacy.envelope), which this module never imports. A shared context id
(`ergon`, `default`) is scoped to the socket (rhetor.api.context_scope). Limits match HTTP: a message over
RHETOR_MAX_BODY_BYTES gets an ERROR in the socket's shape, then close 1009 (sent by rhetor.api.protocols);
beyond RHETOR_WS_MAX_INFLIGHT requests in flight a request gets ERROR `too_many_requests` and the socket
stays. Served on `/ws` and `/`. Knows the gateway, not providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from rhetor.api.attribution import attribute
from rhetor.api.auth import FrameGate
from rhetor.api.context_scope import annotate, connection_token, scope_input
from rhetor.api.native import shapes
from rhetor.api.native.schemas import ChatBody
from rhetor.api.protocols import TOO_BIG_KEY
from rhetor.api.responses import validation_message
from rhetor.errors import RhetorError
from rhetor.gateway import Gateway, now_iso

log = logging.getLogger("rhetor.ws")
REQUEST_TYPES = {"GENERATE": False, "CHAT": False, "STREAM": True, "CHAT_STREAM": True}


class SideProtocol(Protocol):
    """A second protocol on the same socket (the LLM Adapter's envelope), for the frames it claims."""

    def claims(self, frame: dict[str, Any]) -> bool: ...

    async def handle(self, frame: dict[str, Any]) -> None: ...


Side = Callable[["Connection"], SideProtocol]


class Connection:
    def __init__(self, ws: WebSocket, gateway: Gateway, side: Side | None = None) -> None:
        self.ws = ws
        self.gateway = gateway
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()
        self.side = side(self) if side is not None else None  # the legacy envelope protocol, on the same socket
        self.max_inflight = gateway.settings.ws_max_inflight
        self.max_bytes = gateway.settings.max_body_bytes
        self.frame_size = 0
        self.speaks_envelope = False  # the shape of the last frame: an oversized one is answered in it
        # the server protocol (rhetor.api.protocols) sends this before closing 1009 on a too-big message
        ws.scope.setdefault("state", {})[TOO_BIG_KEY] = self.too_big_frame
        self.scope = connection_token()  # shared context ids (`ergon`, `default`) are scoped to this socket
        # the socket's key is re-checked per request (revoked/expired → refused), and its RPM/TPM limits apply
        self.gate = FrameGate(ws.app.state.governance.access, ws.scope)

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(orjson.dumps(frame).decode())

    async def error(self, request_id: Any, message: str, error_type: str = "invalid_request_error") -> None:
        await self.send({"type": "ERROR", "request_id": request_id, "error": message, "error_type": error_type,
                         "timestamp": now_iso()})

    def busy(self) -> str | None:
        """Why one more request must wait, if it must: RHETOR_WS_MAX_INFLIGHT requests already run here."""
        if len(self.tasks) < self.max_inflight:
            return None
        return (f"too many requests in flight on this socket: at most {self.max_inflight} "
                "(RHETOR_WS_MAX_INFLIGHT); wait for one to finish or CANCEL one")

    def too_big_frame(self) -> str:
        message = (f"message exceeds {self.max_bytes} bytes (RHETOR_MAX_BODY_BYTES, the limit for HTTP bodies "
                   "too); closing with code 1009")
        frame: dict[str, Any]
        if self.speaks_envelope:
            frame = {"type": "ERROR", "source": "SYSTEM", "target": "UI", "timestamp": now_iso(),
                     "payload": {"error": message, "error_type": "payload_too_large", "context": None}}
        else:
            frame = {"type": "ERROR", "request_id": None, "error": message, "error_type": "payload_too_large",
                     "timestamp": now_iso()}
        return orjson.dumps(frame).decode()

    async def handle(self, raw: str) -> None:
        self.frame_size = len(raw)  # a request's size, reserved against a TPM limit until it ends
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await self.error(None, f"malformed JSON frame: {exc}")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self.error(None, "a frame must be a JSON object with a string 'type'")
            return
        self.speaks_envelope = self.side is not None and self.side.claims(frame)
        if self.side is not None and self.speaks_envelope:  # {type, source?, target?, payload:{…}}: the adapter's
            await self.side.handle(frame)
            return
        kind, rid = frame["type"].upper(), frame.get("request_id")
        if kind == "REGISTER":
            await self.send({"type": "REGISTER_ACK", "component_id": frame.get("component_id"),
                             "status": "registered", "timestamp": now_iso()})
        elif kind == "PING":
            await self.send({"type": "PONG", "request_id": rid, "timestamp": now_iso()})
        elif kind == "CANCEL":
            task = self.tasks.get(str(rid))
            if task is None:
                await self.error(rid, f"no request in flight with request_id {rid!r}", "not_found")
            else:
                task.cancel()
        elif kind in REQUEST_TYPES:
            await self.start(frame, kind, rid)
        else:
            await self.error(rid, f"unknown frame type {frame['type']!r}; expected one of REGISTER, PING, "
                                  f"CANCEL, {', '.join(REQUEST_TYPES)}")

    async def start(self, frame: dict[str, Any], kind: str, rid: Any) -> None:
        if rid is None or str(rid) in self.tasks:
            await self.error(rid, "request_id is required and must be unique among requests in flight")
            return
        refusal = self.busy()
        if refusal is not None:
            await self.error(rid, refusal, "too_many_requests")
            return
        if kind.startswith("CHAT"):
            body_data = {k: v for k, v in frame.items() if k not in ("prompt", "message")}
        else:  # GENERATE/STREAM carry `prompt` (tekton-llm-client) or `message`
            body_data = {k: v for k, v in frame.items() if k != "messages"}
            body_data["message"] = frame.get("prompt", frame.get("message"))
        try:
            body = ChatBody.model_validate(body_data)
        except ValidationError as exc:
            await self.error(rid, validation_message(list(exc.errors()))[0])
            return
        task = asyncio.create_task(self.run(body, REQUEST_TYPES[kind], str(rid), rid, self.frame_size))
        self.tasks[str(rid)] = task
        task.add_done_callback(functools.partial(self._forget, str(rid)))

    def _forget(self, key: str, _task: asyncio.Task[None]) -> None:
        self.tasks.pop(key, None)

    async def run(self, body: ChatBody, streaming: bool, key: str, rid: Any, size: int = 0) -> None:
        admission = None
        try:
            inp = attribute(body.to_input(), self.ws, "ws", key)
            admission = await self.gate.admit(inp.component, size)
            scope = scope_input(self.gateway, inp, self.scope)
            if not streaming:
                outcome = await self.gateway.chat(inp)
                await self.send({"type": "RESPONSE", "request_id": rid, **annotate(shapes.result(outcome), scope)})
                return
            session = await self.gateway.open_stream(inp)
            try:
                async for event in session.events():
                    frame = annotate(shapes.stream_frame(session, event), scope)
                    await self.send({"type": "CHUNK", "request_id": rid, **frame})
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await self.send({"type": "CHUNK", "request_id": rid, "chunk": "", "done": True,
                                     "finish_reason": "cancelled", "timestamp": now_iso()})
                raise
        except asyncio.CancelledError:
            if not streaming:
                with contextlib.suppress(Exception):
                    await self.error(rid, "cancelled", "cancelled")
            raise
        except RhetorError as exc:
            await self.error(rid, exc.message, exc.type)
        except WebSocketDisconnect:
            pass
        except Exception:  # a bug must not take the socket down with it
            log.exception("websocket request %s failed", key)
            with contextlib.suppress(Exception):
                await self.error(rid, "internal error", "internal_error")
        finally:
            self.gate.release(admission)

    async def close(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)


def socket_router(side: Side | None = None) -> APIRouter:
    """The socket on `/ws` and `/` (the LLM Adapter's WebSocket server accepted any path; its clients used the
    root): the flat protocol, plus `side` for the frames it claims."""
    router = APIRouter()

    async def websocket_endpoint(ws: WebSocket) -> None:
        await serve(ws, side)

    router.add_api_websocket_route("/ws", websocket_endpoint)
    router.add_api_websocket_route("/", websocket_endpoint)
    return router


async def serve(ws: WebSocket, side: Side | None) -> None:
    await ws.accept()
    conn = Connection(ws, ws.app.state.gateway, side)
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None and message.get("bytes") is not None:
                raw = message["bytes"].decode("utf-8", "replace")
            if raw is not None:
                await conn.handle(raw)
    except WebSocketDisconnect:
        pass
    finally:
        await conn.close()


__all__ = ["Connection", "Side", "SideProtocol", "serve", "socket_router"]
