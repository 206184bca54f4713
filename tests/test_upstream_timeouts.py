"""The upstream client's read timeout (rhetor.providers.aio's one timer per connection, a moving deadline)
against a real 127.0.0.1 server that stalls: before the headers, mid-body, mid-stream, and on a reused
connection whose earlier request had a longer limit. Each stall ends in UpstreamTimeoutError; an upstream that
is slow but keeps sending (every gap under the limit, the whole answer over it) is never cut.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rhetor.errors import UpstreamTimeoutError
from rhetor.providers import aio
from rhetor.providers.http import HttpUpstream
from tests.fakes.raw_http import RawServer, answer, raw_server

LIMIT = 0.3  # sock_read in the stalling tests
GUARD = 20.0  # a stall that never times out fails the test instead of hanging it


def upstream(server: RawServer, timeout_s: float = LIMIT) -> HttpUpstream:
    return HttpUpstream("fake", server.url, {"authorization": "Bearer k"}, timeout_s=timeout_s,
                        connect_timeout_s=5.0)


async def stall() -> None:
    await asyncio.Event().wait()  # until the server's end cancels it


async def lines_of(up: HttpUpstream, **kw: float) -> list[bytes]:
    return [line async for lines in up.stream_batches("/v1/s", {"a": 1}, model="m", **kw) for line in lines]


@pytest.fixture
async def client() -> AsyncIterator[list[HttpUpstream]]:
    made: list[HttpUpstream] = []
    yield made
    for up in made:
        await up.aclose()


def test_the_pinned_aiohttp_is_tuned() -> None:
    """requirements.lock pins the release the tuned classes copy; a bump makes this fail until they are
    checked against it (and PINNED moved)."""
    from pathlib import Path

    import aiohttp

    lock = (Path(__file__).resolve().parent.parent / "requirements.lock").read_text()
    pinned = next(line.split("==")[1].split()[0] for line in lock.splitlines() if line.startswith("aiohttp=="))
    assert pinned.startswith(aio.PINNED) and aiohttp.__version__ == pinned and aio.TUNED


async def test_the_session_uses_the_tuned_classes(client: list[HttpUpstream]) -> None:
    async def ok(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(answer(b'{"ok": true}'))

    async with raw_server(ok) as server:
        up = upstream(server)
        client.append(up)
        assert await up.request_json("POST", "/v1/x", {"a": 1}) == {"ok": True}
        session = up._get_session()
        assert session._request_class is aio.EagerRequest
        assert type(session.connector._factory()) is aio.LazyReadTimeout  # type: ignore[union-attr]


async def test_stock_classes_when_aiohttp_is_not_the_pinned_release(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiohttp

    monkeypatch.setattr(aio, "TUNED", False)
    session = aio.new_session({}, read_bufsize=2**16)
    try:
        assert session._request_class is aiohttp.ClientRequest
        assert type(session.connector._factory()) is aiohttp.client_proto.ResponseHandler  # type: ignore[union-attr]
    finally:
        await session.close()


async def test_stall_before_the_headers(client: list[HttpUpstream]) -> None:
    async def silent(request: bytes, writer: asyncio.StreamWriter) -> None:
        await stall()

    async with raw_server(silent) as server:
        up = upstream(server)
        client.append(up)
        with pytest.raises(UpstreamTimeoutError) as info:
            await asyncio.wait_for(up.request_json("POST", "/v1/x", {"a": 1}, model="m"), GUARD)
        assert info.value.provider == "fake" and info.value.retryable
        with pytest.raises(UpstreamTimeoutError):
            await asyncio.wait_for(lines_of(up), GUARD)


async def test_stall_mid_body(client: list[HttpUpstream]) -> None:
    async def half(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\": ")
        await writer.drain()
        await stall()

    async with raw_server(half) as server:
        up = upstream(server)
        client.append(up)
        with pytest.raises(UpstreamTimeoutError):
            await asyncio.wait_for(up.request_json("POST", "/v1/x", {"a": 1}, model="m"), GUARD)


async def test_stall_mid_stream(client: list[HttpUpstream]) -> None:
    async def two_events(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for event in (b"data: one\n\n", b"data: two\n\n"):
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.05)
        await stall()

    async with raw_server(two_events) as server:
        up = upstream(server)
        client.append(up)
        seen: list[bytes] = []
        with pytest.raises(UpstreamTimeoutError):
            async with asyncio.timeout(GUARD):
                async for lines in up.stream_batches("/v1/s", {"a": 1}, model="m"):
                    seen.extend(lines)
        assert [line for line in seen if line] == [b"data: one", b"data: two"]


async def test_a_shorter_limit_on_a_reused_connection(client: list[HttpUpstream]) -> None:
    """The first request leaves the connection's timer armed for its long limit; the second, with a short
    one, must not wait for that timer."""
    calls = 0

    async def first_fast_then_silent(request: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            writer.write(answer(b"{}"))
            return
        await stall()

    async with raw_server(first_fast_then_silent) as server:
        up = upstream(server, timeout_s=GUARD * 3)
        client.append(up)
        assert await up.request_json("POST", "/v1/x", {"a": 1}) == {}
        with pytest.raises(UpstreamTimeoutError):
            await asyncio.wait_for(up.request_json("POST", "/v1/x", {"a": 1}, timeout_s=LIMIT), GUARD)
        assert server.connections == 1  # the same connection both times


async def test_slow_but_steady_is_not_cut(client: list[HttpUpstream]) -> None:
    """Every gap well under the limit, the whole answer well over it: the deadline moves with each read."""
    events = 12

    async def trickle(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for i in range(events):
            event = b"data: %d\n\n" % i
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.write(b"0\r\n\r\n")

    async with raw_server(trickle) as server:
        up = upstream(server, timeout_s=0.6)
        client.append(up)
        lines = await asyncio.wait_for(lines_of(up), GUARD)
        assert [line for line in lines if line] == [b"data: %d" % i for i in range(events)]


async def test_requests_and_streams_over_one_connection(client: list[HttpUpstream]) -> None:
    async def either(request: bytes, writer: asyncio.StreamWriter) -> None:
        if b"/v1/s " in request.split(b"\r\n", 1)[0]:
            body = b"data: a\n\ndata: b\n\n"
            writer.write(answer(body, content_type="text/event-stream"))
        else:
            writer.write(answer(b'{"n": 1}'))

    async with raw_server(either) as server:
        up = upstream(server)
        client.append(up)
        for _ in range(5):
            assert await up.request_json("POST", "/v1/x", {"a": 1}) == {"n": 1}
            assert [line for line in await lines_of(up) if line] == [b"data: a", b"data: b"]
        assert server.connections == 1 and len(server.requests) == 10
