"""Connection guards: uvicorn's httptools and WebSocket protocols, made safe against slow or hostile peers.

HTTP (`http_protocol(limits)`, passed as `uvicorn.Config(http=...)`):
- a request head must arrive within `header_timeout_s` of its first byte (or of the connection opening):
  else 408 and the connection is closed; a head still incomplete after MAX_HEADER_BYTES gets 431;
- a request body must keep moving: at least BODY_PROGRESS_BYTES every `body_idle_timeout_s`, else 408 and
  close (a byte every few seconds is not progress) — time the app itself is not reading does not count;
- beyond `max_connections` open connections (HTTP and WebSocket alike) a new one is answered 503 and closed,
  and it gets at most OVER_CAP_HEADER_S to send its head, so a flood cannot exhaust file descriptors.
WebSocket (`ws_protocol()`, passed as `uvicorn.Config(ws=...)`, with `ws_max_size` = the body cap): a message
over the cap gets the app's ERROR frame (the callable stored under TOO_BIG_KEY in the scope state), then a
close with code 1009; the rest of the oversized message is read and discarded until the peer closes, so the
peer sees the frame and the code instead of a reset connection.
A stalled reader never grows a buffer: uvicorn pauses the app once the transport holds 64 KiB.
Each HTTP request's scope offers the `rhetor.header_lines` extension (rhetor.api.header_lines) when the cycles
are rhetor.api.head.FastHeadCycle: the app may then hand headers over as one pre-built block of lines.
Knows uvicorn's protocol classes; knows nothing of routes, providers or wire shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import CloseCode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from rhetor.api.coalesce import HeadWithBody
from rhetor.api.head import WRITES_LINES, on_headers_complete
from rhetor.api.header_lines import EXTENSION
from rhetor.settings import Settings

log = logging.getLogger("rhetor.conns")
MAX_HEADER_BYTES = 64 * 1024  # request line + headers; llhttp itself has no limit
BODY_PROGRESS_BYTES = 1024  # what a body must bring within each idle window to count as moving
OVER_CAP_HEADER_S = 2.0  # a connection beyond the cap is answered (503) or closed within this
LINGER_S = 10.0  # after a 1009 close: how long the rest of the oversized message is read and discarded
DESCRIPTOR_RESERVE = 256  # descriptors kept free of connections (SQLite, upstreams, answering 503)
TOO_BIG_KEY = "rhetor.ws.too_big_frame"  # scope["state"] key: () -> str, the ERROR frame for a too-big message


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float
    body_idle_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(settings.header_timeout_s, settings.body_idle_timeout_s, settings.max_connections)

    def fit_descriptors(self) -> ConnectionLimits:
        """Make room for the cap under RLIMIT_NOFILE (raising the soft limit up to the hard one), keeping
        DESCRIPTOR_RESERVE for the store, upstream sessions and over-cap answers; else lower the cap."""
        need = self.max_connections + DESCRIPTOR_RESERVE
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and soft < need:
            target = need if hard == resource.RLIM_INFINITY else min(need, hard)
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY or soft >= need:
            return self
        cap = max(1, soft - DESCRIPTOR_RESERVE)
        log.warning("RHETOR_MAX_CONNECTIONS=%d does not fit the file descriptor limit (%d): capping at %d",
                    self.max_connections, soft, cap)
        return replace(self, max_connections=cap)


def _plain(status: bytes, text: str) -> bytes:
    body = text.encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


_Base = HttpToolsProtocol


class GuardedHttpProtocol(HttpToolsProtocol):
    limits: ConnectionLimits  # set on the subclass `http_protocol()` builds

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # a request has begun and its head is not complete
        self._in_body = False  # the head is complete and the body is not
        self._head_started = 0.0
        self._head_bytes = 0
        self._body_deadline = 0.0
        self._body_progress = 0
        self._over_cap = False
        self._detached = False  # upgraded to WebSocket: this object no longer owns the transport

    # -- connection ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._over_cap = len(self.connections) > self.limits.max_connections
        if self._over_cap:
            log.warning("%d connections open (RHETOR_MAX_CONNECTIONS=%d): answering 503",
                        len(self.connections), self.limits.max_connections)
        self._head_started = self.loop.time()
        self._arm_header(self._header_limit())  # a connection that never sends a byte is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        _Base.data_received(self, data)
        if self._detached or self.transport.is_closing():
            return
        if self._in_head:  # the head is still incomplete: every byte of this chunk counts towards its size
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEADER_BYTES:
                self._reject(b"431 Request Header Fields Too Large", f"request head over {MAX_HEADER_BYTES} bytes")
            elif self._header_timer is None:
                self._arm_header(self._header_limit() - (self.loop.time() - self._head_started))
        elif self._in_body and self._body_timer is None:
            self._body_deadline = self.loop.time() + self.limits.body_idle_timeout_s
            self._body_timer = self.loop.call_at(self._body_deadline, self._body_timeout)
        elif (self.cycle is None or self.cycle.response_complete) and self.timeout_keep_alive_task is None \
                and self._header_timer is None:  # bytes that began nothing (stray CRLFs): still on a clock
            self._head_started = self.loop.time()
            self._arm_header(self._header_limit())

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()
        self._detached = True
        if self._over_cap:
            self._reject(b"503 Service Unavailable", "too many connections")
            return
        super().handle_websocket_upgrade()

    # -- parser callbacks ---------------------------------------------------------------------------------
    # (uvicorn's own are called as `_Base.x(self, ...)`, not through super(): these run for every request, and
    # the head's size is counted per chunk in data_received rather than per header; ~8k instructions a request)
    def on_message_begin(self) -> None:
        _Base.on_message_begin(self)
        self._in_head, self._in_body, self._head_bytes = True, False, 0
        if self._header_timer is None:
            self._head_started = self.loop.time()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if self._over_cap:
            self.limit_concurrency = 0  # uvicorn's own path: 503 "Service Unavailable", connection: close
        if WRITES_LINES:  # the cycle writes a block of header lines as it is: say so (header_lines.offer, inlined)
            self.scope.setdefault("extensions", {})[EXTENSION] = {}
        on_headers_complete(self)  # uvicorn's, building rhetor.api.head.FastHeadCycle (no per-header regexes)
        cycle = self.cycle  # the new request's (its task not run yet); not when the request was an upgrade
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = HeadWithBody(self.transport, self.loop)  # type: ignore[assignment]
        self._in_body = not self.parser.should_upgrade()
        self._body_progress = 0

    def on_body(self, body: bytes) -> None:
        _Base.on_body(self, body)
        self._body_progress += len(body)
        if self._body_progress >= BODY_PROGRESS_BYTES:
            self._body_progress = 0
            self._body_deadline = self.loop.time() + self.limits.body_idle_timeout_s

    def on_message_complete(self) -> None:
        self._in_body = False
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        _Base.on_message_complete(self)

    # -- timers -------------------------------------------------------------------------------------------
    def _header_limit(self) -> float:
        limit = self.limits.header_timeout_s
        return min(limit, OVER_CAP_HEADER_S) if self._over_cap else limit

    def _arm_header(self, delay: float) -> None:
        self._header_timer = self.loop.call_later(max(0.0, delay), self._header_timeout)

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._in_body or (self.cycle is not None and not self._in_head
                                                            and not self.cycle.response_complete):
            return  # the head arrived (a request is being served): nothing to time out
        if self._in_head:
            self._reject(b"408 Request Timeout", f"request head not received within {self._header_limit():g} s")
        else:
            self.transport.close()  # nothing was asked: no answer owed

    def _body_timeout(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if not self._in_body or cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused:  # the app is not reading: the client is not to blame
            self._body_deadline = now + self.limits.body_idle_timeout_s
        if now < self._body_deadline:
            self._body_timer = self.loop.call_at(self._body_deadline, self._body_timeout)
            return
        limit = self.limits.body_idle_timeout_s
        log.info("closing a request whose body stalled (under %d bytes in %g s)", BODY_PROGRESS_BYTES, limit)
        started = cycle.response_started
        cycle.disconnected = True  # the app's receive() sees http.disconnect; its sends are dropped
        cycle.message_event.set()
        if started:
            self.transport.close()
        else:
            self._reject(b"408 Request Timeout", f"request body stalled: under {BODY_PROGRESS_BYTES} bytes "
                                                 f"in {limit:g} s")

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _reject(self, status: bytes, text: str) -> None:
        self._cancel_timers()
        self._in_head = self._in_body = False
        self.transport.write(_plain(status, text))
        self.transport.close()


def http_protocol(limits: ConnectionLimits) -> type[GuardedHttpProtocol]:
    """The protocol class for `uvicorn.Config(http=...)`, bound to these limits."""
    cls: type[GuardedHttpProtocol] = type("RhetorHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
    return cls


class _ServerProtocol(ServerProtocol):
    """websockets' sans-I/O server that sends the app's ERROR frame before failing a too-big message."""

    too_big_frame: Callable[[], str] | None = None

    def fail(self, code: CloseCode | int, reason: str = "") -> None:
        if code == CloseCode.MESSAGE_TOO_BIG and self.state is OPEN:
            make = self.too_big_frame
            text = make() if make is not None else ('{"type":"ERROR","request_id":null,"error":"message too '
                                                    'big","error_type":"payload_too_large"}')
            self.send_text(text.encode())
        super().fail(code, reason)


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        extensions = []
        if self.config.ws_per_message_deflate:  # as uvicorn builds it
            extensions = [ServerPerMessageDeflateFactory(server_max_window_bits=12, client_max_window_bits=12,
                                                         compress_settings={"memLevel": 5})]
        self.guarded = _ServerProtocol(extensions=extensions, max_size=self.config.ws_max_size,
                                       logger=logging.getLogger("uvicorn.error"))
        self.conn = self.guarded
        self._lingering = False

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a too-big message: read and dropped
        if self.conn.state is OPEN and self.handshake_complete:
            state = getattr(self, "scope", {}).get("state", {})
            self.guarded.too_big_frame = state.get(TOO_BIG_KEY)
        super().data_received(data)

    def handle_parser_exception(self) -> None:
        sent = self.conn.close_sent
        if sent is None or sent.code != CloseCode.MESSAGE_TOO_BIG:
            super().handle_parser_exception()
            return
        # Unlike uvicorn, do not close with the oversized message still arriving: that resets the connection
        # and the peer loses the ERROR frame and the close code. Keep reading (and dropping) until it closes.
        self.queue.put_nowait({"type": "websocket.disconnect", "code": sent.code, "reason": sent.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = self._lingering = True
        with contextlib.suppress(OSError, RuntimeError):
            self.transport.write_eof()
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(LINGER_S, self.transport.close)

    def eof_received(self) -> None:
        if self._lingering:
            self.transport.close()
        else:
            super().eof_received()


def ws_protocol() -> type[GuardedWebSocketProtocol]:
    """The protocol class for `uvicorn.Config(ws=...)`; its size limit is `Config(ws_max_size=...)`."""
    return GuardedWebSocketProtocol


__all__ = ["TOO_BIG_KEY", "ConnectionLimits", "GuardedHttpProtocol", "GuardedWebSocketProtocol",
           "http_protocol", "ws_protocol"]
