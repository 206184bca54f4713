"""Pure-ASGI middleware (no BaseHTTPMiddleware: it costs ~100 µs a request), one layer for everything per
request: request ids, the `x-rhetor-overhead-ms` header (and the headers inner layers leave in the scope state: the
key's rate limits, governance's notes), the request-body size cap, and the request counters.
Knows nothing of routes or providers.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rhetor.api.presented import HEADER_DICT
from rhetor.errors import PayloadTooLargeError
from rhetor.observability.hub import Observability
from rhetor.timing import UpstreamClock, current_clock

log = logging.getLogger("rhetor")


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, obs: Observability | None = None) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.obs = obs  # counters, Prometheus and the access line of every request (rhetor.observability.hub)
        # Request ids: a random per-process prefix and a counter — unique, and ~20x cheaper than uuid4().
        self.prefix = uuid.uuid4().hex[:12]
        self.counter = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        m = self.obs
        if scope["type"] != "http":
            if scope["type"] == "websocket" and m is not None:
                m.ws_open()
                try:
                    await self.app(scope, receive, send)
                finally:
                    m.ws_closed()
            else:
                await self.app(scope, receive, send)
            return
        clock = UpstreamClock()
        token = current_clock.set(clock)
        rid = declared = None
        headers = scope["headers"]
        found = dict(headers) if type(headers) is list else None  # built in C
        if found is not None and len(found) == len(headers):  # no header repeated: the dict answers as the list
            # left for the key middleware and the fronts (rhetor.api.presented.HEADER_DICT): one dict a request,
            # in place of this layer's loop over the list and the next layer's own dict (~2k instructions)
            scope[HEADER_DICT] = found
            raw = found.get(b"x-request-id")
            if raw is not None:
                rid = raw.decode("latin-1")
            declared = found.get(b"content-length")
        else:
            for key, value in headers:  # one pass for both (the first of each counts)
                if key == b"x-request-id":
                    if rid is None:
                        rid = value.decode("latin-1")
                elif key == b"content-length" and declared is None:
                    declared = value
        if rid is None:
            rid = f"{self.prefix}-{next(self.counter)}"
        scope.setdefault("state", {})["request_id"] = rid
        clock.request_id = rid
        rid_bytes = rid.encode("latin-1")
        status = 500
        started = completed = False

        # A plain function returning send's awaitable: no coroutine of its own per message (a stream sends one
        # per chunk), as Starlette awaits whatever `send` returns.
        def send_with_headers(message: Message) -> Awaitable[None]:
            nonlocal status, started, completed
            kind = message["type"]
            if kind == "http.response.body":
                if not message.get("more_body", False):
                    completed = True
            elif kind == "http.response.start":
                started = True
                status = message["status"]
                overhead = clock.overhead_ms()
                if slot is not None:
                    slot.overhead_ms = overhead
                state = scope["state"]
                # x-ratelimit-* of the caller key (rhetor.api.auth): under Rhetor's server, one (header_lines.NAME,
                # block) pair, passed on as any pair (rhetor.api.header_lines)
                limits = state.get("rhetor_limit_headers", ())
                headers = [*message.get("headers", ()), *limits, (b"x-request-id", rid_bytes),
                           (b"x-rhetor-overhead-ms", f"{overhead:.3f}".encode())]
                notes = state.get("rhetor_notes")  # cache / budget headers (rhetor.api.attribution)
                if notes is not None and notes.headers:
                    headers += notes.headers
                message = {**message, "headers": headers}
            return send(message)

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise PayloadTooLargeError(f"request body exceeds {self.max_body} bytes")
            return message

        slot = m.begin(rid) if m is not None else None
        try:
            length = int(declared) if declared is not None and declared.isdigit() else None
            if length is not None and length > self.max_body:
                await _too_large(send_with_headers, self.max_body)
            else:
                # A declared length within the cap bounds the body (the server delivers no more than it): only
                # a body of unknown length (chunked) is counted as it arrives.
                await self.app(scope, receive if length is not None else counting_receive, send_with_headers)
        except Exception:
            # Starlette re-raises after its 500 handler has answered (and logged); uvicorn would then drop the
            # keep-alive connection. An answered request keeps its connection; an unanswered one gets a 500 here;
            # a response cut mid-body cannot be repaired, so uvicorn closes that connection.
            if completed:
                log.debug("request %s failed after its response was sent", rid, exc_info=True)
            elif started:
                raise
            else:
                log.exception("unexpected error in request %s", rid)
                await _internal_error(send_with_headers, rid)
        finally:
            current_clock.reset(token)
            if m is not None and slot is not None:
                m.end(slot, scope, status)


async def _internal_error(send: Any, rid: str) -> None:
    body = (b'{"type":"error","error":{"type":"internal_error","message":"internal error (request %s)",'
            b'"param":null,"code":"internal_error"}}' % rid.encode("latin-1", "replace"))
    await send({"type": "http.response.start", "status": 500,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _too_large(send: Any, limit: int) -> None:
    # Sent before any route runs, so one body fits every front: the native `{error:{type,message}}`, OpenAI's
    # `{error:{message,type,param,code}}` and Anthropic's `{type:"error", error:{type,message}}`.
    body = (b'{"type":"error","error":{"type":"payload_too_large","message":"request body exceeds %d bytes",'
            b'"param":null,"code":"payload_too_large"}}' % limit)
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["GatewayMiddleware"]
