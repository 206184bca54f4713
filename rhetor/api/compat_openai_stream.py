"""SSE framing of a committed stream as OpenAI `chat.completion.chunk`s.

Sequence: a role chunk (`{"role": "assistant", "content": ""}`), one chunk per text delta, tool calls as
`delta.tool_calls[{index, id, type, function{name, arguments}}]` (id/type/name only on a call's first piece),
a chunk with an empty delta and the `finish_reason`, the usage chunk (`choices: []`) when
`stream_options.include_usage` (every earlier chunk then carries `"usage": null`, as OpenAI sends), then
`data: [DONE]`. A failure after commit is one `data: {"error": {...}}` frame and the end of the stream,
without [DONE], so the SDK raises APIError instead of returning a silently truncated answer.
Knows the gateway's stream types, never providers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from rhetor.api.compat_common import unix_now
from rhetor.api.compat_errors import attempts_status, openai_error
from rhetor.gateway import StreamSession
from rhetor.types import FinishReason, StreamEnd, StreamError, TextDelta, ToolCallDelta

FINISH: dict[FinishReason, str] = {"stop": "stop", "length": "length", "tool_calls": "tool_calls",
                                   "content_filter": "content_filter", "error": "stop", "cancelled": "stop"}


async def chunks(session: StreamSession, completion_id: str, include_usage: bool) -> AsyncIterator[bytes]:
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
    async for event in session.events():
        if isinstance(event, TextDelta):
            yield chunk({"content": event.text})
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
                usage = {"prompt_tokens": event.usage.input_tokens, "completion_tokens": event.usage.output_tokens,
                         "total_tokens": event.usage.total_tokens}
                yield b"data: " + orjson.dumps({**envelope, "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"
        elif isinstance(event, StreamError):
            status = attempts_status(session.info.attempts_dicts()[-1:])
            yield b"data: " + orjson.dumps(openai_error(status, event.error, code=event.type)) + b"\n\n"
            return


__all__ = ["FINISH", "chunks"]
