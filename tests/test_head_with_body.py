"""rhetor.api.coalesce.HeadWithBody: a response's head goes out with its body's first write (one write, not
two), and on its own at the loop's next callback when the app starts a response and then waits."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

from rhetor.api.coalesce import HeadWithBody
from rhetor.api.protocols import ConnectionLimits, http_protocol
from tests.fakes.server import free_port

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recording:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return f"extra {name}"


def test_the_head_goes_out_with_the_first_body_write() -> None:
    async def go() -> tuple[list[bytes], list[bytes]]:
        raw = Recording()
        held = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(HEAD)
        before = list(raw.writes)
        held.write(b"ok")
        held.write(b"!")
        await asyncio.sleep(0)  # the flush callback runs: nothing left to send
        return before, raw.writes

    assert asyncio.run(go()) == ([], [HEAD + b"ok", b"!"])


def test_a_head_alone_goes_out_at_the_next_callback_and_before_a_close() -> None:
    async def go() -> tuple[list[bytes], list[bytes], list[bytes], Any]:
        raw = Recording()
        held = HeadWithBody(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(HEAD)
        await asyncio.sleep(0)
        alone = list(raw.writes)
        raw2 = Recording()
        held2 = HeadWithBody(raw2, asyncio.get_running_loop())  # type: ignore[arg-type]
        held2.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # never held
        cont = list(raw2.writes)
        held2.write(HEAD)
        held2.close()
        return alone, cont, raw2.writes, held2.get_extra_info("peername")

    alone, cont, closed, extra = asyncio.run(go())
    assert alone == [HEAD]
    assert cont == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert closed == [b"HTTP/1.1 100 Continue\r\n\r\n", HEAD]
    assert extra == "extra peername"


def test_a_started_response_that_waits_has_its_head_on_the_wire() -> None:
    """Through uvicorn with Rhetor's protocol on 127.0.0.1: the client reads the head while the app still waits
    (the app goes on only once the client has it), then the body; a plain answer after it on the same connection."""
    async def go() -> tuple[bytes, bytes, bytes]:
        head_seen = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            if scope["path"] == "/wait":
                await head_seen.wait()
            await send({"type": "http.response.body", "body": b"ok"})

        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                http=http_protocol(ConnectionLimits(10.0, 10.0, 100)))
        config.load()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)  # as Server.serve sets it up
        await server.startup()  # listening from here
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /wait HTTP/1.1\r\nhost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            head_seen.set()
            body = await asyncio.wait_for(reader.readexactly(2), 10)
            writer.write(b"GET /now HTTP/1.1\r\nhost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            again = await asyncio.wait_for(reader.readexactly(2), 10)
            writer.close()
            return head, body, again
        finally:
            await server.shutdown()

    head, body, again = asyncio.run(go())
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert (body, again) == (b"ok", b"ok")
