"""The LLM Adapter compatibility shim, WebSocket side: the envelope protocol `{type, source?, target?,
payload:{…}}` of Hephaestus' chat tabs and Terma (contracts §1-2, "WebSocket, legacy envelope").

The socket (rhetor.api.native.ws, given `Envelope` as its side protocol by the app) hands a frame here when it
carries a `payload` object and no `request_id`; every other frame stays with the flat protocol on the same
socket. Requests: `LLM_REQUEST` (`payload.message`), `CHAT_REQUEST`
(`payload.messages`), `REGISTER`, `STATUS`; the context is `payload.context` (default "default"). Replies:
typing `UPDATE`s around each answer, one `UPDATE{chunk, context}` per streamed chunk and a final one with
`done: true`, `RESPONSE` for non-streamed answers, `ERROR{error, context}` on failure — the socket stays
open. `REGISTER` answers `RESPONSE{source:"SYSTEM", payload:{status:"registered"}}` without `message`
(Hephaestus would show a `message` as a chat bubble). A shared context (`ergon`, `terma`, `default`) is this
socket's own conversation: `terma:ws-<socket>-<source>` (rhetor.api.context_scope). Knows the gateway and the
legacy shapes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from typing import Any

from fastapi import WebSocketDisconnect
from pydantic import ValidationError

from rhetor import __version__
from rhetor.api.attribution import attribute
from rhetor.api.context_scope import annotate, scope_input
from rhetor.api.legacy.http import LegacyBody, defaults_of, legacy_chunk, legacy_input, legacy_result
from rhetor.api.native.ws import Connection
from rhetor.api.responses import validation_message
from rhetor.errors import RhetorError
from rhetor.gateway import ChatInput, now_iso
from rhetor.types import StreamError

log = logging.getLogger("rhetor.ws")
REQUESTS = {"LLM_REQUEST": "message", "CHAT_REQUEST": "messages"}


def is_envelope(frame: dict[str, Any]) -> bool:
    """The envelope carries its data in a `payload` object; flat frames never do and carry `request_id`."""
    return isinstance(frame.get("payload"), dict) and "request_id" not in frame


class Envelope:
    """The envelope protocol on one socket; its requests run as tasks of the flat `Connection`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._ids = itertools.count(1)

    def claims(self, frame: dict[str, Any]) -> bool:
        return is_envelope(frame)

    async def reply(self, kind: str, payload: dict[str, Any], target: Any, source: str = "LLM") -> None:
        await self.conn.send({"type": kind, "source": source, "target": target, "timestamp": now_iso(),
                              "payload": payload})

    async def handle(self, frame: dict[str, Any]) -> None:
        kind, payload = frame["type"].upper(), frame["payload"]
        target = frame.get("source") or "UI"
        if kind == "REGISTER":
            client = payload.get("clientId") or payload.get("client_id") or frame.get("source")
            await self.reply("RESPONSE", {"status": "registered", "client_id": client}, target, "SYSTEM")
        elif kind == "STATUS":
            try:
                status = await self._status()
            except RhetorError as exc:
                await self.reply("ERROR", {"error": exc.message, "context": payload.get("context")}, target)
                return
            await self.reply("RESPONSE", status, target, "SYSTEM")
        elif kind in REQUESTS:
            refusal = self.conn.busy()
            if refusal is not None:  # RHETOR_WS_MAX_INFLIGHT: refused, the socket stays open
                await self.reply("ERROR", {"error": refusal, "error_type": "too_many_requests",
                                           "context": payload.get("context")}, target, "SYSTEM")
                return
            key = f"\x00envelope-{next(self._ids)}"
            task = asyncio.create_task(self._run(kind, payload, target, self.conn.frame_size))
            self.conn.tasks[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
        else:
            await self.reply("ERROR", {"error": f"unknown message type {frame['type']!r}; expected one of "
                                                f"REGISTER, STATUS, {', '.join(REQUESTS)}",
                                       "context": payload.get("context")}, target, "SYSTEM")

    def _forget(self, key: str, _task: asyncio.Task[None]) -> None:
        self.conn.tasks.pop(key, None)

    async def _status(self) -> dict[str, Any]:
        status = await self.conn.gateway.provider_status()
        defaults = defaults_of(self.conn.ws.app)
        await defaults.load()
        chosen = defaults.get()
        provider, model = chosen or (status["default_provider"], status["default_model"])
        return {"status": "ok", "service": "rhetor", "version": __version__,
                "providers": {pid: p["available"] for pid, p in status["providers"].items()},
                "default_provider": provider, "default_model": model}

    async def _typing(self, on: bool, context: Any, target: Any) -> None:
        await self.reply("UPDATE", {"status": "typing", "isTyping": on, "context": context}, target, "SYSTEM")

    async def _run(self, kind: str, payload: dict[str, Any], target: Any, size: int = 0) -> None:
        context = payload.get("context", payload.get("context_id")) or "default"
        data = {k: v for k, v in payload.items() if k not in ("context", "message", "messages")}
        data["context_id"] = context
        data[REQUESTS[kind]] = payload.get(REQUESTS[kind])
        data.setdefault("streaming", True)
        try:
            body = LegacyBody.model_validate(data)
            if (body.message if kind == "LLM_REQUEST" else body.messages) is None:
                raise ValueError(f"payload.{REQUESTS[kind]} is required for {kind}")
        except (ValidationError, ValueError) as exc:
            msg = validation_message(list(exc.errors()))[0] if isinstance(exc, ValidationError) else str(exc)
            with contextlib.suppress(Exception):
                await self.reply("ERROR", {"error": msg, "context": context}, target)
            return
        try:
            await self._typing(True, context, target)
            try:
                await self._answer(body, context, target, size)
            finally:
                with contextlib.suppress(Exception):
                    await self._typing(False, context, target)
        except WebSocketDisconnect:
            pass
        except Exception:  # a bug must not take the socket down with it
            log.exception("envelope %s failed", kind)
            with contextlib.suppress(Exception):
                await self.reply("ERROR", {"error": "internal error", "context": context}, target)

    async def _answer(self, body: LegacyBody, context: str, target: Any, size: int = 0) -> None:
        defaults = defaults_of(self.conn.ws.app)
        await defaults.load()
        inp = attribute(legacy_input(body, defaults), self.conn.ws, "legacy_ws")
        admission = None
        try:
            admission = await self.conn.gate.admit(inp.component, size)  # the key still live, its limits
            await self._respond(body, inp, context, target)
        except RhetorError as exc:
            await self.reply("ERROR", {"error": exc.message, "error_type": exc.type, "context": context}, target)
        finally:
            self.conn.gate.release(admission)

    async def _respond(self, body: LegacyBody, inp: ChatInput, context: str, target: Any) -> None:
        gw = self.conn.gateway
        try:
            # `terma` on this socket is this socket's conversation, never another client's
            scope = scope_input(gw, inp, _client_scope(self.conn.scope, target))
            if not body.streaming:
                outcome = await gw.chat(inp)
                await self.reply("RESPONSE", annotate(legacy_result(outcome, context), scope), target)
                return
            session = await gw.open_stream(inp)
        except RhetorError as exc:
            await self.reply("ERROR", {"error": exc.message, "error_type": exc.type, "context": context}, target)
            return
        async for event in session.events():
            if isinstance(event, StreamError):
                await self.reply("ERROR", {"error": event.error, "error_type": event.type, "context": context},
                                 target)
            await self.reply("UPDATE", annotate(legacy_chunk(session, event, context), scope), target)


def _client_scope(connection: str, source: Any) -> str:
    """The socket's scope, plus the envelope's `source` (letters, digits, '-', '_' only) when it names one."""
    name = "".join(c for c in str(source) if c.isascii() and (c.isalnum() or c in "-_"))[:32]
    return f"{connection}-{name}" if name and source != "UI" else connection


__all__ = ["Envelope", "is_envelope"]
