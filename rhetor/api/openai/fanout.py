"""`n > 1` on the OpenAI chat front when the upstream does not take `n` itself (Anthropic, Ollama, Gemini,
simulated): n answers fanned out and merged into one OpenAI reply.

A stream opens n gateway streams at once (each falls back before its first event like any single stream; if one
still fails, the others are closed and the request fails with that error, nothing sent yet), then merges their
events into one `chat.completion.chunk` stream: each choice's deltas carry its own `index`, each choice ends with
its own `finish_reason`, and the final usage chunk (stream_options.include_usage) sums every branch's usage. A
branch failing after the stream is committed ends the whole stream with one OpenAI error frame, without [DONE].
Events pass through one bounded queue (branches wait when it is full). Only the first branch records the turn in
a context; the others are metered like any request. At most `MAX_FANOUT` answers are fanned out (a 400 naming
`n` beyond); an OpenAI upstream takes `n` natively (pass-through) and is not bounded here.
Knows the gateway's stream types, never providers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Final

import orjson

from rhetor.api.compat.common import unix_now
from rhetor.api.compat.fidelity import Relay, first_event, openai_usage, prepended
from rhetor.api.openai.chat_stream import FINISH, error_frame
from rhetor.errors import InvalidRequestError
from rhetor.gateway import ChatInput, Gateway, StreamSession
from rhetor.types import (
    RawFrame,
    ReasoningDelta,
    StreamEnd,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
)

MAX_FANOUT: Final = 8  # upstream requests one caller request may fan out to
QUEUE_EVENTS: Final = 64  # merged events buffered before the branches wait for the client

ErrorFrame = Callable[[StreamSession, StreamError], bytes]


async def stream(gw: Gateway, inp: ChatInput, session: StreamSession, n: int, completion_id: str,
                 include_usage: bool) -> tuple[AsyncIterable[bytes], bool]:
    """The SSE frames of `n` choices and whether they are the upstream's own: relayed when `session`'s upstream
    spoke this API (it answers the n choices itself), else `session` plus n - 1 more streams, merged."""
    first, source = await first_event(session)
    if isinstance(first, RawFrame):
        return Relay(first, source, lambda event: error_frame(session, event)), True
    events = prepended(first, source)
    try:
        check_fanout(n)
        others = await open_branches(gw, inp, n)
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        raise
    sessions = [session, *others]
    return merged(sessions, [events, *(s.events() for s in others)], completion_id, include_usage, error_frame), False


def check_fanout(n: int) -> None:
    """A 400 naming `n` when fanning out `n` answers would exceed MAX_FANOUT upstream requests."""
    if n > MAX_FANOUT:
        raise InvalidRequestError(f"n={n} would fan out to {n} upstream requests (this upstream does not take n "
                                  f"itself); at most {MAX_FANOUT} are allowed", param="n")


def branch_input(inp: ChatInput) -> ChatInput:
    """The input of an extra branch: not recorded (the first branch records the turn), and never passed through
    (an OpenAI target of a branch is asked for one answer, not the caller's `n`)."""
    pt = inp.passthrough
    return replace(inp, record=False, passthrough=replace(pt, forward=False, dropped=[]) if pt is not None else None)


async def open_branches(gw: Gateway, inp: ChatInput, n: int) -> list[StreamSession]:
    """n - 1 more streams of `inp`, opened concurrently; if any fails, the others are closed and it is raised."""
    opened = await asyncio.gather(*(gw.open_stream(branch_input(inp)) for _ in range(n - 1)), return_exceptions=True)
    sessions = [s for s in opened if isinstance(s, StreamSession)]
    failed = [e for e in opened if isinstance(e, BaseException)]
    if failed:
        await asyncio.gather(*(close_session(s) for s in sessions), return_exceptions=True)
        raise failed[0]
    return sessions


async def close_session(session: StreamSession) -> None:
    """End a session nobody will read (its first event is already fetched, so this does not wait)."""
    events = session.events()
    try:
        await anext(events, None)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def _pump(index: int, source: AsyncIterator[StreamEvent],
                queue: asyncio.Queue[tuple[int, StreamEvent | None]]) -> None:
    try:
        async for event in source:
            await queue.put((index, event))
    except Exception as exc:  # the gateway turns failures into StreamError events; this is the backstop
        await queue.put((index, StreamError(f"stream {index} failed: {exc}", "server_error")))
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
    await queue.put((index, None))


async def merged(sessions: list[StreamSession], sources: list[AsyncIterator[StreamEvent]], completion_id: str,
                 include_usage: bool, error_frame: ErrorFrame) -> AsyncIterator[bytes]:
    """One OpenAI chunk stream of `sources` (choice i = sources[i])."""
    first = sessions[0]
    envelope: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": unix_now(),
                                "model": f"{first.provider}/{first.model}", "system_fingerprint": None}
    if include_usage:
        envelope["usage"] = None
    head = b"data: " + orjson.dumps(envelope)[:-1] + b',"choices":'

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return head + orjson.dumps([{"index": index, "delta": delta, "logprobs": None,
                                     "finish_reason": finish}]) + b"}\n\n"

    queue: asyncio.Queue[tuple[int, StreamEvent | None]] = asyncio.Queue(QUEUE_EVENTS)
    tasks = [asyncio.create_task(_pump(i, source, queue)) for i, source in enumerate(sources)]
    usage, started, live = Usage(), set[tuple[int, int]](), len(tasks)
    try:
        for i in range(len(tasks)):
            yield chunk(i, {"role": "assistant", "content": ""})
        while live:
            i, event = await queue.get()
            if event is None:
                live -= 1
            elif isinstance(event, TextDelta):
                yield chunk(i, {"content": event.text})
            elif isinstance(event, ReasoningDelta):
                yield chunk(i, {"reasoning_content": event.text})
            elif isinstance(event, ToolCallDelta):
                call: dict[str, Any] = {"index": event.index}
                if (i, event.index) not in started:
                    started.add((i, event.index))
                    call.update(id=event.id or f"call_{i}_{event.index}", type="function",
                                function={"name": event.name or "", "arguments": event.arguments})
                else:
                    call["function"] = {"arguments": event.arguments}
                yield chunk(i, {"tool_calls": [call]})
            elif isinstance(event, StreamEnd):
                add_usage(usage, event.usage)
                yield chunk(i, {}, FINISH[event.finish_reason])
            elif isinstance(event, StreamError):
                yield error_frame(sessions[i], event)
                return
        if include_usage:
            yield b"data: " + orjson.dumps({**envelope, "choices": [], "usage": openai_usage(usage)}) + b"\n\n"
        yield b"data: [DONE]\n\n"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def add_usage(total: Usage, more: Usage) -> None:
    total.input_tokens += more.input_tokens
    total.output_tokens += more.output_tokens
    total.cached_input_tokens += more.cached_input_tokens
    total.cache_write_tokens += more.cache_write_tokens
    total.reasoning_tokens += more.reasoning_tokens


__all__ = ["MAX_FANOUT", "QUEUE_EVENTS", "add_usage", "branch_input", "check_fanout", "close_session", "merged",
           "open_branches", "stream"]
