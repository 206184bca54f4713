"""Reading Anthropic's Messages API answers: a whole response (`parse_response`), usage and stop reasons, an error
arriving as an SSE event (`error_event`), and the SSE stream (`sse_event(s)`, `SSEParser`, `StreamState`). Pure
functions, tested without a network; shared by the Anthropic provider and its same-vendor pass-through. Knows
nothing of requests, HTTP sessions, routing or how Rhetor frames streams toward its callers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from rhetor.errors import UpstreamProtocolError, UpstreamStatusError
from rhetor.providers.anthropic_tools import parse_tool_uses
from rhetor.types import (
    ChatResponse,
    FinishReason,
    ProviderEvent,
    ReasoningDelta,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    Usage,
)

PROVIDER = "anthropic"
STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic error type -> the HTTP status it is documented with (for errors arriving as an SSE event).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: Any) -> FinishReason:
    return STOP_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def usage_of(usage: dict[str, Any]) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; the normalized Usage counts them in it."""
    read, write = _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens"))
    return Usage(_int(usage.get("input_tokens")) + read + write, _int(usage.get("output_tokens")), read, write)


def parse_response(data: Any, model: str = "") -> ChatResponse:
    """A ChatResponse from a Messages API `message` object; UpstreamProtocolError if it is not one.

    The usual answer (text blocks only, int token counts) is read inline, without `usage_of`, `_int`,
    `finish_reason` or `parse_tool_uses` calls; any other goes the long way (`_parse_response`), with the same
    result."""
    if type(data) is dict:
        blocks, usage = data.get("content"), data.get("usage")
        if type(blocks) is list and type(usage) is dict:
            texts: list[str] = []
            for b in blocks:
                if type(b) is not dict or b.get("type") != "text" or type(text := b.get("text", "")) is not str:
                    return _parse_response(data, model)
                texts.append(text)
            prompt, output = usage.get("input_tokens"), usage.get("output_tokens")
            read, write = usage.get("cache_read_input_tokens"), usage.get("cache_creation_input_tokens")
            if type(prompt) is int and type(output) is int and (read is None or type(read) is int) \
                    and (write is None or type(write) is int):
                read, write, reason, stop = read or 0, write or 0, data.get("stop_reason"), data.get("stop_sequence")
                # positionally, in ChatResponse's and Usage's field order (keywords: ~0.5k instructions each)
                return ChatResponse(
                    texts[0] if len(texts) == 1 else "".join(texts),  # content
                    str(data.get("model") or model),
                    PROVIDER,
                    STOP_REASONS.get(reason, "stop") if type(reason) is str else finish_reason(reason),
                    Usage(prompt + read + write, output, read, write),
                    False,  # simulated
                    [],  # tool_calls: no tool_use block
                    stop if isinstance(stop, str) else None,  # stop_sequence
                    "",  # reasoning: no thinking block
                )
    return _parse_response(data, model)


def _parse_response(data: Any, model: str = "") -> ChatResponse:
    """`parse_response` for any body: every field checked as it comes."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamProtocolError("anthropic answered with an unexpected body (no content list)",
                                    provider=PROVIDER, model=model)
    blocks = data["content"]
    texts: list[str] = []
    thoughts: list[str] = []
    for b in blocks:  # one loop, not two generators (with the positional ChatResponse: an 805k -> 797k)
        if isinstance(b, dict):
            kind = b.get("type")
            if kind == "text":
                texts.append(str(b.get("text", "")))
            elif kind == "thinking":
                thoughts.append(str(b.get("thinking", "")))
    usage = _obj(data, "usage")
    # positionally, in ChatResponse's field order (keywords: ~0.5k instructions each, callgrind)
    return ChatResponse(
        "".join(texts),  # content
        str(data.get("model") or model),
        PROVIDER,
        finish_reason(data.get("stop_reason")),
        usage_of(usage),
        False,  # simulated
        parse_tool_uses(blocks),
        data["stop_sequence"] if isinstance(data.get("stop_sequence"), str) else None,
        "".join(thoughts),  # reasoning
    )


def error_event(data: dict[str, Any], model: str = "") -> UpstreamStatusError:
    """The error for an `event: error` arriving inside a 200 stream, with the status its type is known by."""
    err = _obj(data, "error")
    etype = str(err.get("type") or "api_error")
    message = str(err.get("message") or etype)
    return UpstreamStatusError(f"anthropic stream error {etype}: {message}",
                               status=ERROR_STATUS.get(etype, 500), provider=PROVIDER, model=model,
                               upstream_type=etype)


def sse_event(lines: Iterable[str]) -> tuple[str, str] | None:
    """One server-sent event from its lines (without line endings; the blank line that ends it excluded): (event,
    data) per the SSE spec (comments ignored, multi-line data joined with newlines); None if it carries neither."""
    event = ""
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if not data and not event:
        return None
    return event or "message", "\n".join(data)


def sse_events(lines: list[bytes], pending: list[bytes]) -> list[tuple[bytes, tuple[str, str | bytes]]]:
    """The events that `lines` (a stream's next lines, as received) complete, each as (its lines joined, as a
    relay sends them, (event, data)). Lines of an unfinished event stay in `pending`, and so do those of an event
    of comments only (they go out with the next one). One decode and one parse per event, not per line."""
    out: list[tuple[bytes, tuple[str, str | bytes]]] = []
    for line in lines:
        if line:
            pending.append(line)
            continue
        if not pending:
            continue
        text = b"\n".join(pending)
        if len(pending) == 2 and pending[0][:7] == b"event: " and pending[1][:6] == b"data: ":
            # the form Anthropic sends every event in: its data stays bytes (orjson reads them), no decode or split
            out.append((text, (pending[0][7:].decode("utf-8", "replace"), pending[1][6:])))
            pending.clear()
            continue
        sse = sse_event(text.decode("utf-8", "replace").split("\n"))
        if sse is not None:
            out.append((text, sse))
            pending.clear()
    return out


class SSEParser:
    """Server-sent events, one line at a time (lines without their terminator): yields (event, data) on
    each blank line (`sse_event` reads the lines)."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if line:
            if not line.startswith(":"):  # comments are never kept
                self._lines.append(line)
            return None
        lines, self._lines = self._lines, []
        return sse_event(lines) if lines else None


class StreamState:
    """Folds the Messages stream's events into normalized events: TextDelta per text_delta, one StreamEnd
    at message_stop. Raises UpstreamStatusError on an error event, UpstreamProtocolError on bad JSON."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.cache_write = 0
        self.stop_reason: Any = None
        self.stop_sequence: str | None = None
        self.done = False
        self.tool_index: dict[int, int] = {}  # content block index -> normalized tool-call index

    def handle(self, event: str, raw: str | bytes) -> ProviderEvent | None:
        """One event; `raw` its data, as text or as received (bytes: read as UTF-8, a bad byte as U+FFFD)."""
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if not isinstance(raw, bytes):
                raise UpstreamProtocolError(f"anthropic sent an unparsable {event!r} event", provider=PROVIDER,
                                            model=self.model) from None
            return self.handle(event, raw.decode("utf-8", "replace"))
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"anthropic sent a non-object {event!r} event", provider=PROVIDER,
                                        model=self.model)
        kind = data.get("type") or event
        if kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta" and delta.get("text"):
                return TextDelta(str(delta["text"]))
            if isinstance(delta, dict) and delta.get("type") == "thinking_delta" and delta.get("thinking"):
                return ReasoningDelta(str(delta["thinking"]))
            if isinstance(delta, dict) and delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                tool = self.tool_index.get(_int(data.get("index")))
                if tool is not None:
                    return ToolCallDelta(tool, arguments=str(delta["partial_json"]))
        elif kind == "content_block_start":
            block = _obj(data, "content_block")
            if block.get("type") == "tool_use":
                tool = self.tool_index[_int(data.get("index"))] = len(self.tool_index)
                return ToolCallDelta(tool, str(block.get("id") or f"toolu_{tool}"), str(block.get("name") or ""))
        elif kind == "message_start":
            message = _obj(data, "message")
            self.model = str(message.get("model") or self.model)
            usage = _obj(message, "usage")
            self.input_tokens = _int(usage.get("input_tokens"))
            self.output_tokens = _int(usage.get("output_tokens"))
            self.cache_read = _int(usage.get("cache_read_input_tokens"))
            self.cache_write = _int(usage.get("cache_creation_input_tokens"))
        elif kind == "message_delta":
            delta = _obj(data, "delta")
            self.stop_reason = delta.get("stop_reason", self.stop_reason)
            if isinstance(delta.get("stop_sequence"), str):
                self.stop_sequence = delta["stop_sequence"]
            usage = _obj(data, "usage")
            # message_delta usage is cumulative; input_tokens appears there only in newer API versions
            self.output_tokens = _int(usage.get("output_tokens")) or self.output_tokens
            self.input_tokens = _int(usage.get("input_tokens")) or self.input_tokens
        elif kind == "message_stop":
            self.done = True
            totals = usage_of({"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                               "cache_read_input_tokens": self.cache_read,
                               "cache_creation_input_tokens": self.cache_write})
            return StreamEnd(finish_reason(self.stop_reason), totals, self.model, stop_sequence=self.stop_sequence)
        elif kind == "error":
            raise error_event(data, self.model)
        # ping, content_block_stop and event types added later are ignored, as Anthropic advises
        return None


__all__ = ["ERROR_STATUS", "STOP_REASONS", "SSEParser", "StreamState", "error_event", "finish_reason", "parse_response",
           "sse_event", "sse_events", "usage_of"]
