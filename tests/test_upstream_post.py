"""rhetor.providers.aio_request.post does what aiohttp's own `session.post` does, side by side against a raw
127.0.0.1 server: the same bytes on the wire, the same answer, cookies kept and sent back, redirects followed
the same way (307 keeps the body, 302/303 turn into a GET, a cross-origin hop drops the key, a loop ends in
TooManyRedirects, a Location that is not HTTP or carries credentials fails as aiohttp fails), and a session it
cannot serve (client traces) goes to aiohttp's `_request`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from yarl import URL

from rhetor.providers import aio, aio_request
from tests.fakes.raw_http import RawServer, answer, raw_server

HEADERS = {"authorization": "Bearer k", "anthropic-version": "2023-06-01"}


def redirect(status: str, location: str) -> bytes:
    return f"HTTP/1.1 {status}\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n".encode()


@pytest.fixture
async def server() -> AsyncIterator[RawServer]:
    port: list[int] = []

    async def script(request: bytes, writer: asyncio.StreamWriter) -> None:
        path = request.split(b" ", 2)[1].decode()
        here = f"http://127.0.0.1:{port[0]}"
        replies = {
            "/ok": answer(request.split(b" ", 1)[0] + b" ok"),
            "/cookie": (b"HTTP/1.1 200 OK\r\nset-cookie: sid=s1; Path=/\r\ncontent-length: 2\r\n\r\nok"),
            "/r307": redirect("307 Temporary Redirect", "/ok"),
            "/r308": redirect("308 Permanent Redirect", here + "/ok"),
            "/r302": redirect("302 Found", "/ok"),
            "/r303": redirect("303 See Other", "ok"),
            "/r301": redirect("301 Moved Permanently", "/r307"),
            "/loop": redirect("302 Found", "/loop"),
            "/away": redirect("307 Temporary Redirect", f"http://localhost:{port[0]}/ok"),
            "/noloc": b"HTTP/1.1 301 Moved Permanently\r\ncontent-length: 0\r\n\r\n",
            "/ftp": redirect("307 Temporary Redirect", "ftp://127.0.0.1/ok"),
            "/creds": redirect("307 Temporary Redirect", f"http://u:p@127.0.0.1:{port[0]}/ok"),
            "/bad": redirect("307 Temporary Redirect", "http://[::1/ok"),
        }
        writer.write(replies.get(path, answer(b"missing", status="404 Not Found")))

    async with raw_server(script) as s:
        port.append(int(s.url.rsplit(":", 1)[1]))
        yield s


async def outcome(server: RawServer, paths: list[str], send: Callable[..., Awaitable[aiohttp.ClientResponse]],
                  host: str = "127.0.0.1") -> list[Any]:
    """What each request in turn (one session) came to, and what the server received (`host`: localhost for
    cookies, which aiohttp's jar keeps only for host names)."""
    before = len(server.requests)
    session = aio.new_session(HEADERS, read_bufsize=2**16)
    seen: list[Any] = []
    try:
        for path in paths:
            url = URL(server.url.replace("127.0.0.1", host) + path)
            try:
                response = await send(session, url, b'{"m": 1}', {"content-type": "application/json",
                                                                   "x-request-id": "r-1"},
                                      aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=5))
            except Exception as exc:  # the failure itself is compared
                seen.append((type(exc).__name__, str(exc)))
                continue
            info = response.request_info
            seen.append((response.status, response.reason, await response.read(), str(response.url),
                         len(response.history), [h.status for h in response.history], dict(response.headers),
                         response.get_encoding(), info.method, str(info.url), list(info.headers.items()),
                         response.closed, response.connection))
    finally:
        await session.close()
    await asyncio.wait_for(server.idle(), 10)
    return [seen, server.requests[before:]]


async def stock(session: aiohttp.ClientSession, url: URL, data: bytes, headers: dict[str, str],
                limits: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
    return await session.post(url, data=data, headers=headers, timeout=limits)


CASES = [["/ok"], ["/cookie", "/ok", "/r307"], ["/r307"], ["/r308"], ["/r302"], ["/r303"], ["/r301"], ["/loop"],
         ["/away"], ["/noloc"], ["/ftp"], ["/creds"], ["/bad"], ["/missing"]]


@pytest.mark.parametrize("paths", CASES, ids=["+".join(c) for c in CASES])
async def test_post_does_what_aiohttp_does(server: RawServer, paths: list[str]) -> None:
    assert aio.TUNED  # the pinned aiohttp (requirements.lock): otherwise post is never used
    mine = await outcome(server, paths, aio_request.post)
    theirs = await outcome(server, paths, stock)
    assert mine == theirs
    assert mine[1], "the server saw the requests"


async def test_cookies_are_kept_and_sent_back(server: RawServer) -> None:
    seen, received = await outcome(server, ["/cookie", "/ok"], aio_request.post, host="localhost")
    assert [s[0] for s in seen] == [200, 200]
    assert [seen, received] == await outcome(server, ["/cookie", "/ok"], stock, host="localhost")
    assert b"\r\nCookie: sid=s1\r\n" in received[1] and b"Cookie" not in received[0]


async def test_a_cross_origin_hop_drops_the_key(server: RawServer) -> None:
    seen, received = await outcome(server, ["/away"], aio_request.post)
    assert seen[0][0] == 200 and seen[0][4] == 1
    assert b"authorization: Bearer k" in received[0] and b"authorization" not in received[1].lower()


async def test_plain_sessions_only(server: RawServer) -> None:
    tuned = aio.new_session(HEADERS, read_bufsize=2**16)
    traced = aiohttp.ClientSession(trace_configs=[aiohttp.TraceConfig()])
    try:
        assert aio_request.plain(tuned)
        assert not aio_request.plain(traced)
        assert not aio_request.plain(aiohttp.ClientSession(connector=tuned.connector, connector_owner=False))
    finally:
        await tuned.close()
        await traced.close()
    # a total timeout is aiohttp's own (post hands the call on): same answer
    session = aio.new_session(HEADERS, read_bufsize=2**16)
    try:
        response = await aio_request.post(session, URL(server.url + "/ok"), b"{}", {},
                                          aiohttp.ClientTimeout(total=5))
        assert response.status == 200 and await response.read() == b"POST ok"
    finally:
        await session.close()


def bodies() -> dict[str, bytes]:
    import gzip
    big = b"x" * (3 * 2**20)
    zipped = gzip.compress(b'{"z": 1}')
    return {
        "/json": answer(b'{"a": 1}'),
        "/empty": answer(b""),
        "/nocontent": b"HTTP/1.1 204 No Content\r\n\r\n",
        "/chunked": b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        "/gzip": (b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(zipped)) + zipped,
        "/big": answer(big),
        "/error": answer(b'{"error": {"message": "no"}}', status="429 Too Many Requests"),
    }


@pytest.mark.parametrize("path", list(bodies()))
async def test_received_body_is_what_read_gives(path: str) -> None:
    """`received_body` (or, when it declines, `read()`) gives what `read()` alone gives, leaves the response and
    the reader as `read()` does, and the connection goes on serving the next request."""
    replies = bodies()

    async def script(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(replies[request.split(b" ", 2)[1].decode()])

    async def run(shortcut: bool) -> tuple[Any, ...]:
        async with raw_server(script) as server:
            session = aio.new_session(HEADERS, read_bufsize=2**16)
            try:
                seen = []
                for p in (path, "/json"):
                    response = await aio_request.post(session, URL(server.url + p), b"{}", {},
                                                      aiohttp.ClientTimeout(total=None, sock_read=5))
                    taken = aio_request.received_body(response) if shortcut else None
                    body = taken if taken is not None else await response.read()
                    c = response.content
                    state = [getattr(c, a, None) for a in ("_size", "_cursor", "_low_water", "_high_water")]
                    seen.append((response.status, body, await response.read(), response.closed,
                                 response.connection, c.at_eof(), state, taken is not None))
            finally:
                await session.close()
            return (seen, server.connections)

    mine, theirs = await run(True), await run(False)
    assert [s[:-1] for s in mine[0]] == [s[:-1] for s in theirs[0]] and mine[1] == theirs[1] == 1
    assert mine[0][1][-1], "a small whole body is taken without read()"


@pytest.mark.parametrize("mine", [True, False], ids=["post", "session.post"])
async def test_pooled_connections_as_the_connector_takes_them(server: RawServer, mine: bool) -> None:
    """A kept-alive connection is reused, one past the keep-alive time is closed and a new one made, whichever
    sends (`pooled` for post, the connector's `_get` for aiohttp)."""
    session = aio.new_session(HEADERS, read_bufsize=2**16)
    send = aio_request.post if mine else stock
    timeout = aiohttp.ClientTimeout(total=None, sock_read=5)
    try:
        for _ in range(3):
            response = await send(session, URL(server.url + "/ok"), b"{}", {}, timeout)
            assert await response.read() == b"POST ok"
        assert server.connections == 1
        connector = session.connector
        assert connector is not None
        [(key, conns)] = connector._conns.items()
        proto, t0 = conns[0]
        conns[0] = (proto, t0 - 3600)  # an hour idle: past keepalive_timeout
        response = await send(session, URL(server.url + "/ok"), b"{}", {}, timeout)
        assert await response.read() == b"POST ok"
        assert server.connections == 2 and not proto.is_connected()
        assert len(connector._conns[key]) == 1 and not connector._acquired
    finally:
        await session.close()


async def test_another_aiohttp_release_takes_aiohttps_own_path(server: RawServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the pinned aiohttp (aio.TUNED false): HttpUpstream sends through `session.request` and `read()`."""
    from rhetor.providers.http import HttpUpstream

    for tuned in (True, False):
        monkeypatch.setattr(aio, "TUNED", tuned)
        up = HttpUpstream("fake", server.url, HEADERS, timeout_s=10, connect_timeout_s=5)
        try:
            assert await up.request_bytes("POST", "/ok", {"a": 1}) == b"POST ok"
            assert (up._post is aio_request.post) is tuned
        finally:
            await up.aclose()
