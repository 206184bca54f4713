"""rhetor.api.head.FastHeadCycle: the same bytes on the wire as plain uvicorn (over real sockets, the same tiny ASGI
app served by uvicorn's httptools protocol and by Rhetor's), the same refusals of bad header names and values
(nothing written, the same error raised to the app), keep-alive intact; and byte by byte, the same verdict as
uvicorn's two regexes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from rhetor.api import head
from rhetor.api.head import MAX_NAMES, FastHeadCycle
from rhetor.api.protocols import ConnectionLimits, http_protocol
from tests.fakes import cycle
from tests.fakes.server import free_port

JSON = b'{"ok": true}'
BAD: dict[str, list[tuple[bytes, bytes]]] = {
    "/bad-crlf": [(b"x-a", b"1\r\nx-injected: yes")],
    "/bad-lf": [(b"x-a", b"1\nx")],
    "/bad-cr": [(b"x-a", b"1\rx")],
    "/bad-nul": [(b"x-a", b"1\x00")],
    "/bad-ctl": [(b"x-a", b"\x1b[0m")],
    "/bad-name": [(b"bad name", b"1")],
    "/bad-colon": [(b"x:y", b"1")],
    "/bad-later": [(b"content-length", b"2"), (b"x-ok", b"fine"), (b"x-b", b"\x7f")],
    "/bad-iterator": [(b"x-a", b"1"), (b"x-b", b"\n")],  # given as a one-shot iterator
}


class App:
    """One small ASGI app; each path answers one way. Records what `send` raised and the cycle's class."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.cycles: set[str] = set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.cycles.add(type(send.__self__).__name__)
        path = scope["path"]
        try:
            await self.answer(path, send)
        except RuntimeError as exc:
            self.errors.append(f"{path}: {exc}")
            raise

    async def answer(self, path: str, send: Any) -> None:
        async def start(status: int, headers: list[tuple[bytes, bytes]]) -> None:
            await send({"type": "http.response.start", "status": status, "headers": headers})

        async def body(data: bytes, more: bool = False) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": more})

        if path == "/json":
            await start(200, [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(JSON))])
            await body(JSON)
        elif path == "/stream":
            await start(200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")])
            for n in range(3):
                await body(b"data: %d\n\n" % n, more=True)
            await body(b"")
        elif path == "/chunked":  # explicit, in mixed case; names are lower-cased on the wire
            await start(201, [(b"Transfer-Encoding", b"Chunked"), (b"X-Mixed-Case", b"Yes")])
            await body(b"abc", more=True)
            await body(b"def")
        elif path == "/204":
            await start(204, [])
            await body(b"")
        elif path == "/304":
            await start(304, [(b"etag", b'"v1"')])
            await body(b"")
        elif path == "/close":
            await start(200, [(b"content-length", b"3"), (b"Connection", b"keep-alive, Close")])
            await body(b"bye")
        elif path == "/odd-values":  # a tab and non-ASCII bytes are allowed in values; empty values too
            await start(200, [(b"x-tab", b"a\tb"), (b"x-latin", b"caf\xe9 \x80\xff"), (b"x-empty", b""),
                              (b"content-length", b"0")])
            await body(b"")
        elif path == "/many":  # more distinct names than the memo holds
            names = [(b"x-name-%d" % n, b"%d" % n) for n in range(MAX_NAMES + 20)]
            await start(200, [*names, (b"content-length", b"2")])
            await body(b"ok")
        elif path == "/lists":  # headers as lists (uvicorn takes any pair), a name twice
            await start(200, [[b"x-twice", b"1"], [b"content-length", b"2"], [b"X-Twice", b"2"]])  # type: ignore[list-item]
            await body(b"ok")
        elif path == "/iterator":  # any iterable of pairs will do for uvicorn
            await send({"type": "http.response.start", "status": 200,
                        "headers": iter([(b"content-length", b"2"), (b"x-a", b"1")])})
            await body(b"ok")
        elif path == "/bad-iterator":
            await send({"type": "http.response.start", "status": 200, "headers": iter(BAD[path])})
            await body(b"no")
        elif path in BAD:
            await start(200, BAD[path])
            await body(b"no")
        else:
            await start(404, [(b"content-length", b"0")])
            await body(b"")


@asynccontextmanager
async def served(app: App, rhetor: bool) -> AsyncIterator[int]:
    port = free_port()
    http: Any = http_protocol(ConnectionLimits(10.0, 10.0, 100)) if rhetor else "httptools"
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off", http=http)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # as Server.serve sets it up
    await server.startup()
    await server.on_tick(0)  # the default headers (date, server), as the main loop sets them
    try:
        yield port
    finally:
        await server.shutdown()


DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")


async def read_response(reader: asyncio.StreamReader, method: str) -> bytes:
    """One whole response, its date masked (the one header that may differ between two servers)."""
    head_bytes = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head_bytes.lower().split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
    status = int(lines[0].split()[1])
    out = DATE.sub(b"\r\ndate: -\r\n", head_bytes)
    if method == "HEAD" or status in (204, 304):
        return out
    if b"content-length" in fields:
        return out + await asyncio.wait_for(reader.readexactly(int(fields[b"content-length"])), 10)
    if fields.get(b"transfer-encoding") == b"chunked":
        while True:
            size_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
            chunk = await asyncio.wait_for(reader.readexactly(int(size_line, 16) + 2), 10)
            out += size_line + chunk
            if size_line == b"0\r\n":
                return out
    return out + await asyncio.wait_for(reader.read(), 10)


async def conversation(port: int, requests: list[tuple[str, str, str]]) -> list[bytes]:
    """The requests one after another on one connection; each answer's bytes, then b"<closed>" if the server
    closed the connection after the last one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for method, path, version in requests:
            writer.write(f"{method} {path} HTTP/{version}\r\nhost: x\r\n\r\n".encode())
            answers.append(await read_response(reader, method))
        if await asyncio.wait_for(reader.read(), 0.5) == b"":
            answers.append(b"<closed>")
    except TimeoutError:
        pass  # still open
    except asyncio.IncompleteReadError as exc:
        answers.append(exc.partial + b"<closed>")
    finally:
        writer.close()
    return answers


SAME_CONNECTION = [("GET", "/json", "1.1"), ("GET", "/stream", "1.1"), ("HEAD", "/json", "1.1"),
                   ("GET", "/204", "1.1"), ("GET", "/304", "1.1"), ("POST", "/chunked", "1.1"),
                   ("GET", "/odd-values", "1.1"), ("GET", "/many", "1.1"), ("GET", "/lists", "1.1"),
                   ("GET", "/iterator", "1.1"),
                   ("GET", "/nowhere", "1.1"), ("GET", "/json", "1.1"), ("GET", "/close", "1.1")]


async def both(requests: list[tuple[str, str, str]]) -> tuple[list[bytes], list[bytes], App, App]:
    plain, ours = App(), App()
    async with served(plain, rhetor=False) as port:
        theirs = await conversation(port, requests)
    async with served(ours, rhetor=True) as port:
        mine = await conversation(port, requests)
    return theirs, mine, plain, ours


async def test_the_same_bytes_as_uvicorn_on_one_kept_alive_connection() -> None:
    theirs, mine, plain, ours = await both(SAME_CONNECTION)
    assert mine == theirs
    assert len(mine) == len(SAME_CONNECTION) + 1 and mine[-1] == b"<closed>"  # kept alive until /close
    assert mine[0] == (b"HTTP/1.1 200 OK\r\ndate: -\r\nserver: uvicorn\r\ncontent-type: application/json\r\n"
                       b"content-length: 12\r\n\r\n" + JSON)
    assert b"transfer-encoding: chunked\r\n" in mine[1] and mine[1].endswith(b"0\r\n\r\n")
    assert b"transfer-encoding: Chunked\r\nx-mixed-case: Yes\r\n" in mine[5]
    assert (ours.cycles, plain.cycles) == ({"FastHeadCycle"}, {"RequestResponseCycle"})
    assert ours.errors == plain.errors == []
    assert len(head._names) <= MAX_NAMES


@pytest.mark.parametrize("version", ["1.0", "1.1"])
async def test_the_same_bytes_for_http_1_0_and_a_lone_head(version: str) -> None:
    theirs, mine, _, _ = await both([("HEAD", "/json", version)] if version == "1.1" else [("GET", "/json", "1.0")])
    assert mine == theirs
    if version == "1.0":  # no keep-alive: uvicorn adds connection: close and closes
        assert b"connection: close\r\n" in mine[0] and mine[-1] == b"<closed>"


@pytest.mark.parametrize("path", sorted(BAD))
async def test_a_bad_header_name_or_value_is_refused_as_uvicorn_refuses_it(path: str) -> None:
    """Nothing of the head is written, the app's send raises uvicorn's error, the connection is closed; the
    server goes on serving new connections (kept alive)."""
    theirs, mine, plain, ours = await both([("GET", path, "1.1")])
    assert mine == theirs == [b"<closed>"]
    assert ours.errors == plain.errors
    assert len(ours.errors) == 1 and "Invalid HTTP header" in ours.errors[0]
    after, again, _, _ = await both([("GET", "/json", "1.1"), ("GET", "/json", "1.1")])
    assert again == after and len(again) == 2 and again[1].endswith(JSON)


def start_with(cls: type[RequestResponseCycle], name: Any, value: Any) -> tuple[list[bytes], str]:
    """What a cycle of `cls` writes and raises for one response start carrying this header."""
    return cycle.start(cls, [(name, value), (b"content-length", b"0")])


def test_every_byte_gets_uvicorns_verdict_in_a_name_and_in_a_value() -> None:
    for byte in range(256):
        one = bytes((byte,))
        for name, value in ((b"x-" + one, b"v"), (b"x-a", b"v" + one + b"w"), (one, b"")):
            assert start_with(FastHeadCycle, name, value) == start_with(RequestResponseCycle, name, value), \
                (name, value)
    odd: list[tuple[Any, Any]] = [(b"x-a", "text"), ("x-a", b"v"), (b"content-length", b"x")]  # types, length
    for name, value in odd:
        verdict = start_with(FastHeadCycle, name, value)
        assert verdict == start_with(RequestResponseCycle, name, value) and verdict[1]


async def test_pipelined_requests_get_the_same_bytes() -> None:
    async def pipelined(port: int) -> list[bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /json HTTP/1.1\r\nhost: x\r\n\r\nGET /stream HTTP/1.1\r\nhost: x\r\n\r\n"
                     b"GET /close HTTP/1.1\r\nhost: x\r\n\r\n")
        answers = [await read_response(reader, "GET") for _ in range(3)]
        writer.close()
        return answers

    plain, ours = App(), App()
    async with served(plain, rhetor=False) as port:
        theirs = await pipelined(port)
    async with served(ours, rhetor=True) as port:
        mine = await pipelined(port)
    assert mine == theirs and mine[2].endswith(b"\r\n\r\nbye")
    assert ours.cycles == {"FastHeadCycle"}
