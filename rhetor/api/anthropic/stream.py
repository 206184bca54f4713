"""SSE framing of a committed stream as the Anthropic Messages event sequence.

    message_start (input_tokens: an estimate until the end) · ping · for each content block:
    content_block_start · content_block_delta (text_delta | input_json_delta)… · content_block_stop ·
    message_delta {stop_reason, stop_sequence, usage{input_tokens, output_tokens}} · message_stop

Text opens a text block; each tool call its own tool_use block. While the upstream is silent a `ping` goes
out every PING_INTERVAL_S, as Anthropic's own streams do. A failure after commit is `event: error` with
Anthropic's error body, then the end: never a silently truncated stream. Reasoning from another vendor opens a
thinking block (thinking_delta). When the upstream is Anthropic itself (same-vendor pass-through: the first event is
a RawFrame) its own events are relayed as received. Knows the gateway's stream types.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import orjson

from rhetor.api.anthropic.errors import anthropic_error
from rhetor.api.compat.errors import attempts_status
from rhetor.api.compat.fidelity import Relay, anthropic_usage, first_event, prepended
from rhetor.gateway import StreamSession
from rhetor.types import (
    FinishReason,
    RawFrame,
    ReasoningDelta,
    StreamEnd,
    StreamError,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
)

PING_INTERVAL_S = 10.0
STOP_REASONS: dict[FinishReason, str] = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                                         "content_filter": "refusal", "error": "end_turn", "cancelled": "end_turn"}


def stop_reason(finish: FinishReason, stop_sequence: str | None) -> str:
    return "stop_sequence" if stop_sequence else STOP_REASONS[finish]


def sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


PING = sse("ping", {"type": "ping"})


async def with_pings(source: AsyncIterator[StreamEvent], interval: float) -> AsyncIterator[StreamEvent | None]:
    """`source`'s events, with None whenever `interval` seconds pass without one."""
    pending: asyncio.Task[StreamEvent] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield None
                continue
            task, pending = pending, None
            try:
                yield task.result()
            except StopAsyncIteration:
                return
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()


class _Blocks:
    """Which content block is open, so deltas land in the right one."""

    def __init__(self) -> None:
        self.count = 0
        self.open: tuple[str, int] | None = None  # ("text", -) or ("tool", tool index)

    def switch(self, kind: str, tool: int, start: dict[str, Any]) -> bytes:
        out = self.close()
        self.open = (kind, tool)
        out += sse("content_block_start", {"type": "content_block_start", "index": self.count,
                                           "content_block": start})
        return out

    def close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        self.count += 1
        return sse("content_block_stop", {"type": "content_block_stop", "index": self.count - 1})

    def delta(self, delta: dict[str, Any]) -> bytes:
        return sse("content_block_delta", {"type": "content_block_delta", "index": self.count, "delta": delta})


async def events(session: StreamSession, message_id: str,
                 input_estimate: Callable[[], int]) -> tuple[AsyncIterable[bytes], bool]:
    """The SSE frames of `session` and whether they are the upstream's own (relayed) rather than framed here;
    `input_estimate` is asked only for a stream framed here (a relayed one carries the upstream's own count)."""
    first, source = await first_event(session)

    def error_frame(event: StreamError) -> bytes:
        return sse("error", anthropic_error(attempts_status(session.info.attempts_dicts()[-1:]), event.error))

    if isinstance(first, RawFrame):
        return Relay(first, source, error_frame), True
    return framed(session, prepended(first, source), message_id, input_estimate(), error_frame), False


async def framed(session: StreamSession, source: AsyncIterator[StreamEvent], message_id: str, input_estimate: int,
                 error_frame: Any) -> AsyncIterator[bytes]:
    start: dict[str, Any] = {"id": message_id, "type": "message", "role": "assistant",
                             "model": f"{session.provider}/{session.model}", "content": [], "stop_reason": None,
                             "stop_sequence": None, "usage": {"input_tokens": input_estimate, "output_tokens": 1}}
    yield sse("message_start", {"type": "message_start", "message": start}) + PING
    blocks = _Blocks()
    async for event in with_pings(source, PING_INTERVAL_S):
        if event is None:
            yield PING
        elif isinstance(event, ReasoningDelta):
            head = b"" if blocks.open is not None and blocks.open[0] == "thinking" else \
                blocks.switch("thinking", -1, {"type": "thinking", "thinking": "", "signature": ""})
            yield head + blocks.delta({"type": "thinking_delta", "thinking": event.text})
        elif isinstance(event, TextDelta):
            head = b"" if blocks.open is not None and blocks.open[0] == "text" else \
                blocks.switch("text", -1, {"type": "text", "text": ""})
            yield head + blocks.delta({"type": "text_delta", "text": event.text})
        elif isinstance(event, ToolCallDelta):
            head = b""
            if blocks.open != ("tool", event.index):
                head = blocks.switch("tool", event.index, {"type": "tool_use", "id": event.id or f"toolu_{event.index}",
                                                           "name": event.name or "", "input": {}})
            yield head + (blocks.delta({"type": "input_json_delta", "partial_json": event.arguments})
                          if event.arguments else b"")
        elif isinstance(event, StreamEnd):
            out = blocks.close() if blocks.count or blocks.open else \
                blocks.switch("text", -1, {"type": "text", "text": ""}) + blocks.close()
            usage = anthropic_usage(event.usage)
            out += sse("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": stop_reason(event.finish_reason, event.stop_sequence),
                                                   "stop_sequence": event.stop_sequence},
                                         "usage": usage})
            yield out + sse("message_stop", {"type": "message_stop"})
        elif isinstance(event, StreamError):
            yield error_frame(event)
            return


__all__ = ["PING_INTERVAL_S", "STOP_REASONS", "events", "framed", "stop_reason", "with_pings"]
