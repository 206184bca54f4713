"""ClosingStreamingResponse (rhetor.api.streaming) under an ASGI 2.3 server, as uvicorn is: a disconnect ends the
stream at once (its body closed), a finished stream stops listening, and a cancellation from outside stays one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rhetor.api.streaming import TURN_BYTES, ClosingStreamingResponse, Relay

SCOPE: dict[str, Any] = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _silent_upstream(closed: list[str]) -> AsyncIterator[bytes]:
    try:
        yield b"data: 1\n\n"
        await asyncio.sleep(3600)  # an upstream that never speaks again
        yield b"never"
    finally:
        closed.append("closed")


def test_a_disconnect_ends_a_waiting_stream() -> None:
    async def go() -> tuple[list[Any], list[str]]:
        sent: list[Any] = []
        closed: list[str] = []
        calls = 0

        async def receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        response = ClosingStreamingResponse(_silent_upstream(closed), media_type="text/event-stream")
        await asyncio.wait_for(response(SCOPE, receive, send), 5)
        assert calls == 1
        return sent, closed

    sent, closed = run(go())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert closed == ["closed"]


def test_a_finished_stream_stops_listening() -> None:
    async def go() -> list[Any]:
        sent: list[Any] = []
        listening = asyncio.Event()
        stopped: list[bool] = []

        async def receive() -> dict[str, Any]:
            listening.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                stopped.append(True)
                raise
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def body() -> AsyncIterator[bytes]:
            await listening.wait()
            yield b"a"
            yield b"b"

        await ClosingStreamingResponse(body())(SCOPE, receive, send)
        await asyncio.sleep(0)
        assert stopped == [True]
        return sent

    sent = run(go())
    assert [(m.get("body"), m.get("more_body")) for m in sent[1:]] == [(b"a", True), (b"b", False)]  # first alone


def test_a_cancellation_from_outside_is_not_swallowed() -> None:
    async def go() -> None:
        closed: list[str] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            pass

        task = asyncio.ensure_future(ClosingStreamingResponse(_silent_upstream(closed))(SCOPE, receive, send))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert closed == ["closed"]

    run(go())


def test_a_stream_with_its_events_at_hand_makes_no_listener() -> None:
    """The listener is made once the stream lets the loop run: a body that never waits ends without one."""
    async def go() -> tuple[list[Any], int, list[int]]:
        sent: list[Any] = []
        calls = 0
        tasks: list[int] = []

        async def receive() -> dict[str, Any]:
            nonlocal calls
            calls += 1
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def body() -> AsyncIterator[bytes]:
            yield b"a"
            tasks.append(len(asyncio.all_tasks()))
            yield b"b"

        await ClosingStreamingResponse(body())(SCOPE, receive, send)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return sent, calls, tasks

    sent, calls, tasks = run(go())
    assert [(m.get("body"), m.get("more_body")) for m in sent[1:]] == [(b"a", True), (b"b", False)]  # first alone
    assert calls == 0
    assert tasks == [1]  # the response's own task only


def test_a_producer_that_never_waits_stops_at_its_first_forced_turn() -> None:
    """A gone client ends an endless producer within the bytes of one forced loop turn (TURN_BYTES)."""
    async def go() -> tuple[int, list[str]]:
        sent = 0
        closed: list[str] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal sent
            sent += len(message.get("body", b""))

        async def body() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"x" * 1024
            finally:
                closed.append("closed")

        await asyncio.wait_for(ClosingStreamingResponse(body())(SCOPE, receive, send), 5)
        return sent, closed

    sent, closed = run(go())
    assert sent <= TURN_BYTES
    assert closed == ["closed"]


class _Upper(Relay):
    """A Relay of strings: each upper-cased, "skip" not sent, "stop" the last."""

    def chunk(self, event: Any) -> bytes | None:
        if event == "skip":
            return None
        self.over = event == "stop"
        return str(event).upper().encode()


def test_a_relay_is_sent_directly_first_chunks_last_and_an_early_end_closes_its_source() -> None:
    async def go(items: list[str]) -> tuple[list[Any], list[str], list[bytes]]:
        sent: list[Any] = []
        closed: list[str] = []

        async def source() -> AsyncIterator[str]:
            try:
                for item in items:
                    yield item
            finally:
                closed.append("closed")

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await ClosingStreamingResponse(_Upper(source(), b"<", b">"))(SCOPE, receive, send)
        iterated = [chunk async for chunk in _Upper(source(), b"<", b">")]  # as any other body would
        return [m.get("body") for m in sent[1:]], closed, iterated

    assert run(go(["a", "skip", "b"])) == ([b"<", b"AB>"], ["closed", "closed"], [b"<", b"A", b"B", b">"])
    # an early end: no `last`, and the source (not run to its end) is closed by the response
    assert run(go(["a", "stop", "b"])) == ([b"<", b"ASTOP"], ["closed", "closed"], [b"<", b"A", b"STOP"])


def test_the_first_chunk_goes_out_before_the_source_is_stepped_again() -> None:
    """The first chunk (with the head, in the server) is not held for what the source makes next: a relay's `first`
    before the source's first step, a body's first chunk before its second."""
    async def go(relayed: bool) -> list[str]:
        seen: list[str] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            seen.append(f"sent {message.get('body', b'').decode()}")

        async def source() -> AsyncIterator[str]:
            for item in ("a", "b"):
                seen.append(f"made {item}")
                yield item

        async def body() -> AsyncIterator[bytes]:
            async for item in source():
                yield item.encode()

        response = ClosingStreamingResponse(_Upper(source(), b"<") if relayed else body())
        await asyncio.wait_for(response(SCOPE, receive, send), 5)
        return seen

    assert run(go(True)) == ["sent ", "sent <", "made a", "made b", "sent AB"]
    assert run(go(False)) == ["sent ", "made a", "sent a", "made b", "sent b"]


def test_a_cancel_while_the_first_chunk_is_sent_closes_the_source() -> None:
    async def go() -> list[str]:
        seen: list[str] = []
        sending = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message.get("body") == b"a":
                sending.set()
                await asyncio.sleep(3600)  # a paused transport

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"a"
                yield b"b"
            finally:
                seen.append("closed")

        task = asyncio.get_running_loop().create_task(ClosingStreamingResponse(body())(SCOPE, receive, send))
        await sending.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    assert run(go()) == ["closed"]


def test_chunks_at_hand_go_out_together_and_before_the_source_waits() -> None:
    """After the first chunk, what the source has ready is one send; it is sent before the source waits (no byte
    held back)."""
    async def go() -> list[tuple[bytes, bool]]:
        sent: list[tuple[bytes, bool]] = []
        gate = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                sent.append((message["body"], message["more_body"]))
                if message["body"] == b"bc":
                    gate.set()  # the source waits for this: "bc" must have gone out first

        async def body() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"
            yield b"c"
            await gate.wait()
            yield b"d"
            await asyncio.sleep(0)
            yield b"e"

        await asyncio.wait_for(ClosingStreamingResponse(body())(SCOPE, receive, send), 5)
        return sent

    assert run(go()) == [(b"a", True), (b"bc", True), (b"d", True), (b"e", False)]


def test_a_cancel_while_the_pending_chunks_are_sent_reaches_the_waiting_source() -> None:
    """The flush before a wait can itself wait (a full transport): a cancel then is the source's, as if it came
    while the source waited; its cleanup runs and the cancel is not swallowed."""
    async def go() -> list[str]:
        seen: list[str] = []
        flushing = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message.get("body") == b"b":
                flushing.set()
                await asyncio.sleep(3600)  # a paused transport

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"a"  # (the first chunk: sent at once)
                yield b"b"  # pending, flushed before the source waits
                await asyncio.sleep(3600)
                yield b"b"
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            finally:
                seen.append("closed")

        task = asyncio.get_running_loop().create_task(ClosingStreamingResponse(body())(SCOPE, receive, send))
        await flushing.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return seen

    assert run(go()) == ["cancelled", "closed"]


def test_an_encoded_sse_response_is_what_starlette_builds() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"a"

    given = [(b"cache-control", b"no-cache"), (b"x-rhetor-provider", b"openai")]
    ours = ClosingStreamingResponse.sse(body(), given)
    theirs = ClosingStreamingResponse(body(), media_type="text/event-stream",
                                      headers={"cache-control": "no-cache", "x-rhetor-provider": "openai"})
    assert ours.raw_headers == theirs.raw_headers
    assert (ours.status_code, ours.media_type, ours.background, ours.charset) == \
        (theirs.status_code, theirs.media_type, theirs.background, theirs.charset)
    assert dict(ours.headers) == dict(theirs.headers)
    assert given == [(b"cache-control", b"no-cache"), (b"x-rhetor-provider", b"openai")]  # not changed
