"""The one streaming response of the web layer: Starlette's StreamingResponse, made to stop when the client goes.

Two gaps closed:
- A producer that never waits (the simulated provider at delay 0, an upstream whose bytes are already
  buffered) never lets the event loop run, so the server never learns the client is gone: writes to the dead
  transport are dropped silently and the whole stream is generated anyway — a closed 3 MB stream burned its
  full CPU and left ~25 MB resident, and it starved every other connection meanwhile. A loop turn forced every
  16 chunks or 64 KiB lets the disconnect (and other clients) in.
- On disconnect Starlette cancels the sending task and abandons the body iterator at a `yield`; its `finally`
  blocks (closing the upstream response, recording the turn) then wait for the garbage collector. Here the
  iterator is closed as soon as the response ends, however it ends.
A stalled (not closed) reader is already bounded by uvicorn's flow control: sends wait once the transport
holds 64 KiB. The first chunk goes out alone, at once; after it, the chunks a source has ready go out in one send,
made before the source waits. A `Relay` body (a source of events and how each becomes bytes) is sent without a
generator layer of its own. Knows nothing of SSE framing, shapes or providers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from rhetor.running import this_task

log = logging.getLogger("rhetor")
# A producer that never waits gets a loop turn forced after this many chunks or bytes, whichever comes first: a
# closed client's stream stops within ~64 KiB, and no other connection waits behind more than that.
TURN_CHUNKS, TURN_BYTES = 16, 64 * 1024
CLOSE_BUDGET_S = 10.0  # the stream's cleanup (upstream close, turn record) must finish within this
# ASGI spec versions whose servers do not raise on a send to a gone client: the response listens for the disconnect
# (as Starlette does below 2.4). From 2.4 on Starlette's own way (no listener) is already lean.
_LISTENING = frozenset({"2.0", "2.1", "2.2", "2.3"})


class Relay:
    """A body made of a source's events without a generator of its own re-yielding them: `first`, then
    `chunk(event)` of each event (None: nothing sent for it; `over` set: the last), then `last`.
    ClosingStreamingResponse iterates `source` itself and sends the chunks directly (per event a method call where a
    generator layer was a resume, and its setup and close, per stream); anything else iterates it as any body."""

    __slots__ = ("first", "last", "over", "source")

    def __init__(self, source: AsyncIterator[Any], first: bytes = b"", last: bytes = b"") -> None:
        self.source, self.first, self.last, self.over = source, first, last, False

    def chunk(self, event: Any) -> bytes | None:
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            if self.first:
                yield self.first
            async for event in self.source:
                chunk = self.chunk(event)
                if chunk is not None:
                    yield chunk
                if self.over:
                    return
            if self.last:
                yield self.last
        finally:
            await self.aclose()

    @property
    def ag_frame(self) -> Any:
        """The source's (an async generator that ran to its end has none): nothing left to close."""
        return getattr(self.source, "ag_frame", True)

    async def aclose(self) -> None:
        close = getattr(self.source, "aclose", None)
        if close is not None:
            await close()


SSE_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")  # what Starlette's init_headers sets for SSE


class ClosingStreamingResponse(StreamingResponse):
    _listen: Callable[[], None] | None = None  # starts the disconnect listener now, if not yet (_race)

    @classmethod
    def sse(cls, body: AsyncIterable[Any], headers: list[tuple[bytes, bytes]]) -> ClosingStreamingResponse:
        """A 200 `text/event-stream` of `body` with `headers` encoded already: the response Starlette's __init__
        builds (an async body as is; `init_headers` appends the content type to the given headers), without its
        ABC check of the body and its header encoding (~6k instructions before a stream's first byte)."""
        response = cls.__new__(cls)
        response.body_iterator = body
        response.status_code, response.background, response.media_type = 200, None, "text/event-stream"
        response.raw_headers = [*headers, SSE_TYPE]
        return response

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        owed = 0  # chunks and bytes sent since the last loop turn this response forced
        body: Any = self.body_iterator
        relay: Relay | None = body if isinstance(body, Relay) else None
        pending: list[bytes] = []  # chunks not sent yet: they go out together when the source would wait
        # The first chunk goes out alone, at once (with the head: rhetor.api.coalesce.HeadWithBody), not with the
        # chunks ready after it: those waited for the rest of the upstream's read (all of a short answer) to be
        # parsed and framed first (benchmarks/ttfb.py: oa-stream's first byte 160 -> 108 us in process).
        opened = False
        if relay is not None:
            if relay.first:
                opened = True
                await send({"type": "http.response.body", "body": relay.first, "more_body": True})
            body = relay.source
        step = aiter(body).__anext__
        while True:
            # The source's next chunk, its first step taken here: ready (the events of one upstream read) it
            # joins `pending`; about to wait, what is pending is sent first. One write per upstream read where
            # each chunk was one (strace -c at c=1: native-stream 10 writes -> 4, oa-stream 5 -> 3).
            waiting = step().__await__()
            try:
                yielded = waiting.send(None)
            except StopIteration as ready:
                chunk = ready.value
            except StopAsyncIteration:
                break
            else:
                flush = None
                if pending:
                    flush = send({"type": "http.response.body", "body": _joined(pending), "more_body": True})
                    pending = []
                try:
                    chunk = await _rest(waiting, yielded, flush)
                except StopAsyncIteration:
                    break
            if relay is not None:
                chunk = relay.chunk(chunk)
                if chunk is None:
                    continue
            elif not isinstance(chunk, bytes | memoryview):
                chunk = chunk.encode(self.charset)
            pending.append(chunk)
            if relay is not None and relay.over:
                break
            if not opened:
                opened = True
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                pending = []
                continue
            owed += len(chunk) + TURN_BYTES // TURN_CHUNKS
            if owed >= TURN_BYTES:
                # one loop turn: a disconnect is noticed even if the producer never waits. Not after every chunk:
                # the 8 events of one upstream read then cost 8 loop turns (an epoll and a task step each), ~10%
                # of a streamed request's syscalls (strace -c, benchmarks at c=1).
                owed = 0
                await send({"type": "http.response.body", "body": _joined(pending), "more_body": True})
                pending = []
                if self._listen is not None:  # the listener (see _race) runs in this very turn
                    self._listen()
                await asyncio.sleep(0)
        if relay is not None and relay.last and not relay.over:
            pending.append(relay.last)
        await send({"type": "http.response.body", "body": _joined(pending), "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope["type"] == "http" and scope.get("asgi", {}).get("spec_version", "2.0") in _LISTENING:
                await self._race(receive, send)
                if self.background is not None:
                    await self.background()
            else:
                await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            # An async generator that ran to its end (ag_frame gone) has nothing left to close: skip the shielded
            # scope, whose anyio machinery was ~6 syscalls and ~60 Python calls per stream (cProfile, strace -c).
            if aclose is not None and getattr(self.body_iterator, "ag_frame", True) is not None:
                # shielded: also when this very task is being cancelled; bounded: every wait has a timeout
                with anyio.move_on_after(CLOSE_BUDGET_S, shield=True):
                    try:
                        result = aclose()
                        if inspect.isawaitable(result):
                            await result
                    except Exception:  # the stream's own cleanup failed: the response is over regardless
                        log.exception("closing a stream's body failed")

    async def _race(self, receive: Receive, send: Send) -> None:
        """What Starlette does for a server before ASGI spec 2.4 (uvicorn says 2.3), in plain asyncio: the stream
        and a listener for the client's disconnect run together and whichever ends first ends the other. Starlette
        runs them in an anyio task group: with its cancel scopes and task spawning that was ~10% of a streamed
        `oa-stream` request's profile (benchmarks/instructions.py --profile); here one Task and one cancel.

        The listener Task is made only once the stream lets the loop run (a call_soon callback, or the forced turn
        of stream_response): a stream whose events are all at hand when it starts ends with none — until then no
        disconnect could have been noticed anyway. A Task's creation, first step and cancel were ~3 loop turns
        (epoll_pwait and getpid each, strace -c) per streamed request."""
        streamer = this_task()  # (asyncio.current_task() asks the OS for the pid on CPython 3.11)
        assert streamer is not None
        loop = streamer.get_loop()
        gone: list[BaseException | None] = []  # set by the listener: None = disconnected, else its own failure
        listener: asyncio.Task[None] | None = None

        async def listen() -> None:
            try:
                await self.listen_for_disconnect(receive)
                gone.append(None)
            except Exception as exc:  # as in a task group: the failure ends the stream and is raised
                gone.append(exc)
            streamer.cancel()

        def start() -> None:
            nonlocal listener
            if listener is None:
                listener = loop.create_task(listen())

        self._listen = start
        started = loop.call_soon(start)
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not gone or streamer.uncancel() > 0:  # not (only) the listener's: the task really is stopping
                raise
            if gone[0] is not None:
                raise gone[0] from None
        finally:
            self._listen = None
            started.cancel()
            if listener is not None:
                listener.cancel()


def _joined(chunks: list[bytes]) -> bytes:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@types.coroutine
def _rest(waiting: Any, yielded: Any, flush: Awaitable[None] | None) -> Generator[Any, Any, Any]:
    """The rest of an await whose first step (`waiting.send(None)`) yielded `yielded`, as `yield from` would go on
    from there; `flush` (the pending chunks' send) is awaited first. Whatever interrupts the flush (a cancel) is
    thrown into the waiting source, as it would have been had the cancel come while the source waited."""
    try:
        if flush is not None:
            try:
                yield from flush.__await__()
            except GeneratorExit:
                raise
            except BaseException as exc:
                yielded = waiting.throw(exc)
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                raise
            except BaseException as exc:
                yielded = waiting.throw(exc)
            else:
                yielded = waiting.send(sent)
    except StopIteration as done:
        return done.value
    except GeneratorExit:
        waiting.close()
        raise


__all__ = ["SSE_TYPE", "ClosingStreamingResponse", "Relay"]
