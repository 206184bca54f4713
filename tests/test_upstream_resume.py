"""rhetor.providers.aio.LazyReadTimeout.resume_reading skips aiohttp's resume when nothing is paused: a stream read
slowly (the reader pauses the connection past its high-water mark and resumes it below the low one), a gzip
stream and a plain answer come out byte for byte as through aiohttp's own protocol, and the connection goes on
serving the next request."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

import aiohttp
import pytest
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from rhetor.providers import aio, aio_request
from tests.fakes.raw_http import raw_server

CHUNK = b"data: " + b"y" * 4090 + b"\n\n"  # 4 KiB an event
ZIPPED = gzip.compress(b"".join(b"data: %d\n\n" % i for i in range(20000)))


def chunked(parts: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


REPLIES = {
    "/stream": b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
               + chunked([CHUNK] * 400),  # 1.6 MiB at once: past the reader's high-water mark
    "/gzip": b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(ZIPPED) + ZIPPED,
    "/json": b'HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{"a": 1}',
}


async def read_slowly(tuned: bool) -> tuple[list[Any], int, bool]:
    paused: list[bool] = []

    async def script(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(REPLIES[request.split(b" ", 2)[1].decode()])

    async with raw_server(script) as server:
        session = aio.new_session({}, read_bufsize=2**16)
        if not tuned:  # aiohttp's own protocol, as an untuned release has it
            session.connector._factory = lambda: ResponseHandler(loop=asyncio.get_running_loop())  # type: ignore
        try:
            seen: list[Any] = []
            for path in ("/stream", "/gzip", "/json", "/stream"):
                response = await aio_request.post(session, URL(server.url + path), b"{}", {},
                                                  aiohttp.ClientTimeout(total=None, sock_read=5))
                got = []
                async for data in response.content.iter_any():
                    got.append(data)
                    paused.append(response.connection is not None and response.connection.protocol is not None
                                  and response.connection.protocol._reading_paused)
                    await asyncio.sleep(0)
                seen.append((response.status, b"".join(got), response.content.at_eof()))
        finally:
            await session.close()
        return seen, server.connections, any(paused)


@pytest.mark.skipif(not aio.TUNED, reason="the tuned protocol is used only with the pinned aiohttp")
async def test_reading_resumes_as_aiohttps_own() -> None:
    mine, theirs = await read_slowly(True), await read_slowly(False)
    assert mine == theirs
    seen, connections, paused = mine
    stream = b"".join([CHUNK] * 400)
    assert [s[1] for s in seen] == [stream, gzip.decompress(ZIPPED), b'{"a": 1}', stream]
    assert connections == 1  # every answer read to its end, the connection reused
    assert paused, "the reader paused the connection at least once (the resume path was taken)"
