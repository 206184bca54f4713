"""A cheaper response head: `FastHeadCycle`, uvicorn's httptools `RequestResponseCycle` with the head of an
HTTP/1.1 response (`http.response.start`) checked and written without two regex searches per header.

rhetor.api.protocols.GuardedHttpProtocol builds its cycles with `on_headers_complete` below: uvicorn's own
method, run with FastHeadCycle for its global name `RequestResponseCycle` (no copy of its code; setting the
cycle's `__class__` afterwards instead made CPython turn the instance's inline attributes into a dict, and every
attribute access on the cycle dearer: +20k instructions a request under callgrind, more than the regexes cost).
Body messages, and any start that would not take the plain path (writing paused, client gone, an invalid header
or status), go to uvicorn's own `send`, which does and raises exactly what it always did.

Why a fast path: uvicorn 0.54 runs `HEADER_RE.search(name)` and `HEADER_VALUE_RE.search(value)` for every
header of every response, then lower-cases the name: under callgrind (benchmarks/instructions.py oa --where
server) the regex engine alone cost ~19k instructions a request with governance off and ~33k with it on (six
more `x-ratelimit-*` headers), of ~803k / ~911k. Here a name is checked once and its line prefix
(b"\r\n" + lower-cased name + b": ") kept (a few dozen distinct constants; the memo is bounded), and all values
are checked in one C pass: a translation table that moves every byte HEADER_VALUE_RE refuses changes the joined
values iff one is there. Measured (benchmarks/response_head.py, start and body sends): 11 headers 79.5k -> 39.4k
instructions, 17 (with the rate limits) 110.7k -> 47.2k; benchmarks/README.md, "Round 7, response head", has
the whole server's figures.
Blocks of header lines (rhetor.api.header_lines, offered by rhetor.api.protocols when WRITES_LINES): a
(header_lines.NAME, block) pair is written as it is, in its place, unchecked (valid by construction: the app's
own names and digits); on uvicorn's own send (the fall-back) it is first split into the pairs it stands for.
17 headers, the six x-ratelimit-* ones as a block: 47.3k -> 42.1k instructions (benchmarks/README.md, round 9).
Keep `_start`'s loop under 256 code units: past that, each iteration runs an EXTENDED_ARG (+0.4k a response;
tests/test_header_lines.py checks it).
Knows uvicorn's RequestResponseCycle (its fields and module constants); nothing of routes, governance or wire
shapes.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from rhetor.api import header_lines

MAX_NAMES = 256  # distinct header names remembered as valid; beyond, a new name is checked on each response
_names: dict[bytes, bytes] = {}  # a valid header name as the app gave it -> b"\r\n" + its lower-case form + b": "
_LENGTH, _ENCODING, _CONNECTION = b"\r\ncontent-length: ", b"\r\ntransfer-encoding: ", b"\r\nconnection: "
_SPECIAL = frozenset((_LENGTH, _ENCODING, _CONNECTION))


def _refusing_table() -> bytes:
    """A `bytes.translate` table that keeps every byte HEADER_VALUE_RE allows and moves every byte it refuses."""
    table = bytearray(range(256))
    for byte in range(256):
        if HEADER_VALUE_RE.search(bytes((byte,))):
            table[byte] = 0x01 if byte == 0x00 else 0x00  # both refused: either one shows up as a change
    return bytes(table)


_REFUSED = _refusing_table()


def _prefix(name: bytes) -> bytes:
    """b"\r\n" + `name` lower-cased + b": " if uvicorn accepts it as a header name (remembered while there is
    room); else ValueError."""
    if HEADER_RE.search(name):
        raise ValueError("header name")
    prefix = b"\r\n" + name.lower() + b": "
    if len(_names) < MAX_NAMES:
        _names[name] = prefix
    return prefix


_LINES = b""  # the prefix of header_lines.NAME: its value is a block of whole lines, written as it is
_names[header_lines.NAME] = _LINES  # (the first name remembered: always found)
_SPECIAL = frozenset((*_SPECIAL, _LINES))


def _plain(message: Any) -> Any:
    """`message` for uvicorn's own send: a block of header lines as the (name, value) pairs it stands for."""
    headers = message.get("headers")
    if headers is None:
        return message
    try:
        headers = list(headers)  # (they may be a one-shot iterator)
        if any(pair[0] == header_lines.NAME for pair in headers):
            headers = header_lines.plain(headers)
    except Exception:  # headers that are no pairs: uvicorn's send refuses them, as it always has
        pass
    return {**message, "headers": headers}


def _closes(connection: bytes) -> bool:
    """Whether a `connection` header's value says close (out of FastHeadCycle's loop, which it would lengthen
    past 255 code units: an EXTENDED_ARG on every iteration, +0.4k instructions a response)."""
    return b"close" in [token.lower().strip() for token in connection.split(b",")]


_uvicorn_send = RequestResponseCycle.send


class FastHeadCycle(RequestResponseCycle):
    """uvicorn's response cycle; only the plain `http.response.start` is its own (see the module docstring)."""

    __slots__ = ()

    # A plain function returning the awaitable (as GatewayMiddleware's send does): body messages cost no
    # coroutine of their own on top of uvicorn's.
    def send(self, message: ASGISendEvent) -> Coroutine[Any, Any, None]:
        if self.response_started or message["type"] != "http.response.start":
            return _uvicorn_send(self, message)
        if self.disconnected or self.flow.write_paused:
            return _uvicorn_send(self, _plain(message))
        return self._start(message)  # type: ignore[arg-type]

    async def _start(self, message: dict[str, Any]) -> None:
        # Everything is worked out in locals first: on anything unusual the message goes to uvicorn's send,
        # unchanged state and all, and it raises (or answers) as it always has.
        headers = None
        try:
            status_code: int = message["status"]
            headers = list(message.get("headers", []))
            content = [STATUS_LINE[status_code][:-2]]  # each header line brings the CRLF before it
            chunked = self.chunked_encoding
            expected = self.expected_content_length
            keep_alive = self.keep_alive
            has_connection_close = False
            names = _names
            lines_at = 0
            for name, value in self.default_headers + headers:
                try:
                    prefix = names[name]
                except KeyError:  # a name not seen yet (or not valid)
                    prefix = _prefix(name)
                if prefix in _SPECIAL:
                    if prefix == _LENGTH:
                        if chunked is None:
                            expected = int(value.decode())
                            chunked = False
                    elif prefix == _ENCODING:
                        if value.lower() == b"chunked":
                            expected = 0
                            chunked = True
                    elif not prefix:  # _LINES: a block of header lines (header_lines.NAME), put in the place of
                        if lines_at:  # the empty value kept here once the values are checked
                            raise ValueError("a second block of header lines")
                        lines_at, lines, value = len(content) + 1, value, b""
                    elif _closes(value):
                        keep_alive = False
                        has_connection_close = True
                content.append(prefix)
                content.append(value)
            values = b"".join(content[2::2])
            if values.translate(_REFUSED) != values:
                raise ValueError("header value")
            if lines_at:
                content[lines_at] = lines
        except Exception:  # uvicorn's send decides, and raises what it always raised
            if headers is not None:  # the headers as read here (they may have been a one-shot iterator)
                message = {**message, "headers": headers}
            await _uvicorn_send(self, _plain(message))
            return

        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            self.access_logger.info('%s - "%s %s HTTP/%s" %d', get_client_addr(self.scope), self.scope["method"],
                                    get_path_with_query_string(self.scope), self.scope["http_version"],
                                    status_code)
        if not keep_alive and not has_connection_close:
            content.append(b"\r\nconnection: close")
        if chunked is None and self.scope["method"] != "HEAD" and status_code not in (204, 304):
            chunked = True  # neither content-length nor transfer-encoding given
            content.append(b"\r\ntransfer-encoding: chunked")
        self.keep_alive, self.chunked_encoding, self.expected_content_length = keep_alive, chunked, expected
        content.append(b"\r\n\r\n")
        self.transport.write(b"".join(content))


def _building_fast_cycles(method: Callable[[HttpToolsProtocol], None]) -> Callable[[HttpToolsProtocol], None]:
    """`method` (uvicorn's on_headers_complete) with FastHeadCycle for the global `RequestResponseCycle`; uvicorn's
    own method if it no longer builds its cycle by that name (tests/test_head.py then fails: no fast path)."""
    code = method.__code__
    if "RequestResponseCycle" not in code.co_names or method.__closure__ or method.__defaults__:
        return method
    names = {**vars(httptools_impl), "RequestResponseCycle": FastHeadCycle}  # uvicorn's module constants
    clone: Callable[[HttpToolsProtocol], None] = types.FunctionType(code, names, method.__name__)
    return clone


on_headers_complete = _building_fast_cycles(HttpToolsProtocol.on_headers_complete)
# Whether the cycles built are FastHeadCycle, which writes blocks of header lines: the HTTP protocol then offers
# the extension (rhetor.api.header_lines) in each request's scope
WRITES_LINES = on_headers_complete is not HttpToolsProtocol.on_headers_complete

__all__ = ["MAX_NAMES", "WRITES_LINES", "FastHeadCycle", "on_headers_complete"]
