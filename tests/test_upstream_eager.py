"""rhetor.providers.aio.EagerRequest puts on the wire exactly what aiohttp's own ClientRequest does - request
line, headers, body, byte for byte, as a raw 127.0.0.1 socket server receives them - writing a small body
without aiohttp's body-writer task; a body over EAGER_MAX (or none) goes aiohttp's own way and still works.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest

from rhetor.providers import aio
from rhetor.providers.http import HttpUpstream
from tests.fakes.raw_http import RawServer, answer, raw_server

HEADERS = {"authorization": "Bearer k", "anthropic-version": "2023-06-01"}


async def ok(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(answer(b'{"ok": true}'))


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    async with raw_server(ok) as s:
        yield s


@pytest.fixture
def body_tasks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times aiohttp's body writer (run as a task of its own) was started."""
    started: list[int] = []
    original = aiohttp.ClientRequest.write_bytes

    def counting(self: aiohttp.ClientRequest, *args: Any, **kw: Any) -> Awaitable[None]:
        started.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(aiohttp.ClientRequest, "write_bytes", counting)
    return started


async def wire_bytes(server: RawServer, tuned: bool, send: Callable[[aiohttp.ClientSession], Awaitable[Any]],
                     monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Everything the server received on the connection of one request sent through a new session, tuned or
    stock (read to the connection's end: a stray byte after the body would show)."""
    monkeypatch.setattr(aio, "TUNED", tuned)
    before = len(server.requests)
    session = aio.new_session(HEADERS, read_bufsize=2**16)
    try:
        response = await send(session)
        assert response.status == 200 and await response.json() == {"ok": True}
    finally:
        await session.close()
    await asyncio.wait_for(server.idle(), 10)
    received = server.requests[before:]
    assert len(received) == 1
    return received[0]


SENDS: dict[str, Callable[[RawServer], Callable[[aiohttp.ClientSession], Awaitable[Any]]]] = {
    "json": lambda s: lambda session: session.post(s.url + "/v1/messages?beta=true", data=b'{"model": "m"}',
                                                   headers={"content-type": "application/json",
                                                            "x-request-id": "r-1"}),
    "no content type": lambda s: lambda session: session.post(s.url + "/v1/x", data=b"abc"),
    "empty": lambda s: lambda session: session.post(s.url + "/v1/x", data=b""),
    "put": lambda s: lambda session: session.put(s.url + "/v1/x", data=b"[1]"),
    "get": lambda s: lambda session: session.get(s.url + "/v1/models"),
    "at the limit": lambda s: lambda session: session.post(s.url + "/v1/x", data=b"x" * aio.EAGER_MAX),
    "over the limit": lambda s: lambda session: session.post(s.url + "/v1/x", data=b"y" * (aio.EAGER_MAX + 1)),
    # aiohttp's own request set-up (EagerRequest.__init__ hands these on): each makes it do more than add headers
    "own host": lambda s: lambda session: session.post(s.url + "/v1/x", data=b"h", headers={"Host": "example"}),
    "own length": lambda s: lambda session: session.post(s.url + "/v1/x", data=b"abc",
                                                         headers={"content-length": "3"}),
    "params": lambda s: lambda session: session.post(s.url + "/v1/x", data=b"p", params={"a": "1"}),
    "cookies": lambda s: lambda session: session.post(s.url + "/v1/x", data=b"c", cookies={"k": "v"}),
    "string body": lambda s: lambda session: session.post(s.url + "/v1/x", data="text"),
    "lower-case method": lambda s: lambda session: session.request("post", s.url + "/v1/x", data=b"m"),
    "delete": lambda s: lambda session: session.delete(s.url + "/v1/x"),
}
EAGER = {"json", "no content type", "empty", "put", "at the limit", "own host", "own length", "params", "cookies",
         "lower-case method"}


@pytest.mark.parametrize("case", list(SENDS))
async def test_same_bytes_on_the_wire_as_stock_aiohttp(server: RawServer, case: str, body_tasks: list[int],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    send = SENDS[case](server)
    stock = await wire_bytes(server, False, send, monkeypatch)
    stock_tasks = len(body_tasks)
    tuned = await wire_bytes(server, True, send, monkeypatch)
    assert tuned == stock
    assert tuned.startswith(tuned.split(b" ", 1)[0] + b" /v1/") and b"\r\nauthorization: Bearer k\r\n" in tuned
    tuned_tasks = len(body_tasks) - stock_tasks
    assert tuned_tasks == (0 if case in EAGER else stock_tasks)  # the point: no body-writer task when eager


async def test_a_large_body_through_the_upstream(server: RawServer) -> None:
    """A 1 MiB request body (aiohttp's own way: over EAGER_MAX) arrives whole; small ones before and after
    share its connection."""
    up = HttpUpstream("fake", server.url, HEADERS, timeout_s=10, connect_timeout_s=5)
    try:
        big = {"messages": [{"content": "z" * 2**20}]}
        for payload in ({"a": 1}, big, {"b": 2}):
            assert await up.request_json("POST", "/v1/x", payload) == {"ok": True}
        sent = [request.split(b"\r\n\r\n", 1)[1] for request in server.requests]
        assert [orjson.loads(body) for body in sent] == [{"a": 1}, big, {"b": 2}]
        assert server.connections == 1
    finally:
        await up.aclose()


async def test_many_requests_at_once(server: RawServer) -> None:
    up = HttpUpstream("fake", server.url, HEADERS, timeout_s=10, connect_timeout_s=5)
    try:
        answers = await asyncio.gather(*(up.request_json("POST", "/v1/x", {"i": i}) for i in range(50)))
        assert answers == [{"ok": True}] * 50
        assert sorted(orjson.loads(r.split(b"\r\n\r\n", 1)[1])["i"] for r in server.requests) == list(range(50))
    finally:
        await up.aclose()
