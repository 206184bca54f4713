"""SSE framing of a committed stream as OpenAI `chat.completion.chunk`s.

Sequence: a role chunk (`{"role": "assistant", "content": ""}`), one chunk per text delta, tool calls as
`delta.tool_calls[{index, id, type, function{name, arguments}}]` (id/type/name only on a call's first piece),
a chunk with an empty delta and the `finish_reason`, the usage chunk (`choices: []`) when
`stream_options.include_usage` (every earlier chunk then carries `"usage": null`, as OpenAI sends), then
`data: [DONE]`. A failure after commit is one `data: {"error": {...}}` frame and the end of the stream,
without [DONE], so the SDK raises APIError instead of returning a silently truncated answer. Reasoning (Anthropic
thinking) goes out as `delta.reasoning_content`, as OpenAI-compatible servers send it. When the upstream spoke this
API itself (same-vendor pass-through: the first event is a RawFrame) its own events are relayed as received
(`n` included: an OpenAI upstream answers every choice itself). `n > 1` elsewhere: rhetor.api.openai.fanout.
Knows the gateway's stream types, never providers.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from functools import partial
from typing import Any

import orjson

from rhetor.api.compat.common import unix_now
from rhetor.api.compat.errors import attempts_status
from rhetor.api.compat.fidelity import Relay, first_event, openai_usage, prepended
from rhetor.api.openai.errors import openai_error
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

FINISH: dict[FinishReason, str] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                   "content_filter": "content_filter", "error": "stop", "cancelled": "stop"}


async def chunks(session: StreamSession, completion_id: str,
                 include_usage: bool) -> tuple[AsyncIterable[bytes], bool]:
    """The SSE frames of `session` and whether they are the upstream's own (relayed) rather than framed here."""
    first, source = await first_event(session)
    frame = partial(error_frame, session)
    if isinstance(first, RawFrame):
        return Relay(first, source, frame), True
    return framed(session, prepended(first, source), completion_id, include_usage, frame), False


def error_frame(session: StreamSession, event: StreamError) -> bytes:
    """A failure after commit, as the one OpenAI error frame that ends the stream."""
    status = attempts_status(session.info.attempts_dicts()[-1:])
    return b"data: " + orjson.dumps(openai_error(status, event.error, code=event.type)) + b"\n\n"


async def framed(session: StreamSession, events: AsyncIterator[StreamEvent], completion_id: str,
                 include_usage: bool, error_frame: Any) -> AsyncIterator[bytes]:
    # The envelope is serialized once; each chunk splices its choices into it (orjson, no per-chunk dicts).
    envelope: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": unix_now(),
                                "model": f"{session.provider}/{session.model}", "system_fingerprint": None}
    if include_usage:
        envelope["usage"] = None
    head = b"data: " + orjson.dumps(envelope)[:-1] + b',"choices":'
    tail = b"}\n\n"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return head + orjson.dumps([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]) + tail

    yield chunk({"role": "assistant", "content": ""})
    started: set[int] = set()
    async for event in events:
        if isinstance(event, TextDelta):
            yield chunk({"content": event.text})
        elif isinstance(event, ReasoningDelta):
            yield chunk({"reasoning_content": event.text})
        elif isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {"index": event.index}
            if event.index not in started:
                started.add(event.index)
                call.update(id=event.id or f"call_{event.index}", type="function",
                            function={"name": event.name or "", "arguments": event.arguments})
            else:
                call["function"] = {"arguments": event.arguments}
            yield chunk({"tool_calls": [call]})
        elif isinstance(event, StreamEnd):
            yield chunk({}, FINISH[event.finish_reason])
            if include_usage:
                usage = openai_usage(event.usage)
                yield b"data: " + orjson.dumps({**envelope, "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        elif isinstance(event, StreamError):
            yield error_frame(event)
            return


__all__ = ["FINISH", "chunks", "error_frame", "framed"]
