"""A scripted raw-socket HTTP/1.1 server on 127.0.0.1, in the test's own event loop: it records each request's
exact bytes and answers with whatever bytes (and pauses) the test scripts, so a test can stall an upstream
before its headers, mid-body or mid-stream, or compare what two clients put on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

# Given the request's bytes and the writer, answers (possibly slowly, possibly never).
Script = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's bytes: the head, then a Content-Length body (this server needs no chunked requests)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + (await reader.readexactly(length) if length else b"")


class RawServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.url = ""
        self._tasks: set[asyncio.Task[object]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    request = await read_request(reader)
                except asyncio.IncompleteReadError as exc:
                    if exc.partial:  # bytes after the last whole request: recorded, for a test to see
                        self.requests.append(exc.partial)
                    return
                except ConnectionError:
                    return
                self.requests.append(request)
                await self.script(request, writer)
        finally:
            writer.close()
            self._tasks.discard(task)

    async def idle(self) -> None:
        """Until every connection the clients closed has been read to its end."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


@asynccontextmanager
async def raw_server(script: Script) -> AsyncIterator[RawServer]:
    server = RawServer(script)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    try:
        yield server
    finally:
        listener.close()
        for task in list(server._tasks):  # a script stalled for good ends with the test
            task.cancel()
        await asyncio.gather(*list(server._tasks), return_exceptions=True)


def answer(body: bytes, *, status: str = "200 OK", content_type: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
            + body)
