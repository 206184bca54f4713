"""Reading OpenAI's Chat Completions answers: a whole response (`parse_response`), its usage and finish reason,
an error arriving inside a 200 stream (`error_event`), and the SSE stream line by line (`sse_data`, `parse_chunk`,
`StreamState`). Pure functions, tested without a network; shared by the OpenAI provider, its same-vendor
pass-through and the OpenAI-compatible providers. Knows nothing of requests, HTTP sessions, routing or how Rhetor
frames streams toward its callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from rhetor.errors import UpstreamProtocolError, UpstreamStatusError
from rhetor.providers.openai_tools import parse_tool_call_deltas, parse_tool_calls
from rhetor.types import (
    ChatResponse,
    FinishReason,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

PROVIDER = "openai"
FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
# OpenAI error type/code -> the HTTP status it comes with (for an error arriving inside a 200 stream).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400, "invalid_api_key": 401, "authentication_error": 401, "permission_error": 403,
    "model_not_found": 404, "not_found_error": 404, "rate_limit_exceeded": 429, "rate_limit_error": 429,
    "insufficient_quota": 429, "requests": 429, "tokens": 429, "server_error": 500, "api_error": 500,
    "service_unavailable": 503, "overloaded_error": 529,
}


def finish_reason(value: Any) -> FinishReason:
    return FINISH_REASONS.get(value, "stop") if isinstance(value, str) else "stop"


def parse_usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    details, out_details = value.get("prompt_tokens_details"), value.get("completion_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    reasoning = out_details.get("reasoning_tokens") if isinstance(out_details, dict) else None
    return Usage(prompt if isinstance(prompt, int) else 0, completion if isinstance(completion, int) else 0,
                 cached if isinstance(cached, int) else 0, 0,  # cached_input_tokens, cache_write_tokens
                 reasoning if isinstance(reasoning, int) else 0)


def error_event(err: Any, model: str = "") -> UpstreamStatusError:
    """The error for an `{"error": ...}` object inside a 200 answer or stream. Its status: the error's own
    numeric code (vLLM sends one), else the one its type/code is known by, else 500 (retryable)."""
    if not isinstance(err, dict):
        err = {"message": str(err)}
    etype = str(err["type"]) if err.get("type") else None
    code = err.get("code")
    status = 500
    if isinstance(code, int) and 400 <= code <= 599:
        status = code
    elif isinstance(code, str) and code.isdigit() and 400 <= int(code) <= 599:
        status = int(code)
    elif isinstance(code, str) and code in ERROR_STATUS:
        status = ERROR_STATUS[code]
    elif etype in ERROR_STATUS:
        status = ERROR_STATUS[etype]
    message = str(err.get("message") or etype or "unknown error")
    return UpstreamStatusError(f"openai stream error ({status}): {message}", status=status, provider=PROVIDER,
                               model=model, upstream_type=etype)


def parse_response(data: Any, model: str = "") -> ChatResponse:
    """A ChatResponse from a `chat.completion` object; UpstreamProtocolError if it is not one.

    The usual answer (a dict with a first choice holding a message, usage of two int counts and no details) is read
    inline, without `finish_reason` or `parse_usage` calls and `isinstance` per field; any other goes the long way
    (`_parse_response`), with the same result."""
    if type(data) is not dict:
        return _parse_response(data, model)
    choices = data.get("choices")
    if type(choices) is not list or not choices:
        return _parse_response(data, model)
    first = choices[0]
    usage = data.get("usage")
    if type(first) is not dict or type(usage) is not dict or "prompt_tokens_details" in usage \
            or "completion_tokens_details" in usage:
        return _parse_response(data, model)
    message = first.get("message")
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if type(message) is not dict or type(prompt) is not int or type(completion) is not int \
            or message.get("tool_calls") or message.get("reasoning_content") or message.get("reasoning"):
        return _parse_response(data, model)
    content, reason = message.get("content"), first.get("finish_reason")
    # positionally, in ChatResponse's and Usage's field order (~0.5k instructions a keyword, callgrind)
    return ChatResponse(
        content if isinstance(content, str) else "",  # None when the model only called tools
        str(data.get("model") or model),
        PROVIDER,
        FINISH_REASONS.get(reason, "stop") if type(reason) is str else finish_reason(reason),
        Usage(prompt, completion, 0, 0, 0),
        False,  # simulated
        [],  # tool_calls
        None,  # stop_sequence
        "",  # reasoning
    )


def _parse_response(data: Any, model: str = "") -> ChatResponse:
    """`parse_response` for any body: every field checked as it comes."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if isinstance(data, dict) and data.get("error") and not choices:
        raise error_event(data["error"], model)
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamProtocolError("openai answered with an unexpected body (no choices)", provider=PROVIDER,
                                    model=model)
    first = choices[0]
    message = first.get("message")
    content: Any = None
    tool_calls: list[ToolCall] = []
    reasoning: Any = None  # the visible reasoning OpenAI-compatible servers (vLLM, DeepSeek, Ollama) add
    if isinstance(message, dict):
        content = message.get("content")
        if message.get("tool_calls"):
            tool_calls = parse_tool_calls(message["tool_calls"])
        reasoning = message.get("reasoning_content") or message.get("reasoning")
    usage = data.get("usage")
    # positionally, in ChatResponse's field order (~0.5k instructions a keyword, callgrind)
    return ChatResponse(
        content if isinstance(content, str) else "",  # None when the model only called tools
        str(data.get("model") or model),
        PROVIDER,
        finish_reason(first.get("finish_reason")),
        (parse_usage(usage) if usage is not None else None) or Usage(),
        False,  # simulated
        tool_calls,
        None,  # stop_sequence
        reasoning if isinstance(reasoning, str) else "",
    )


def sse_data(line: str) -> str | None:
    """The payload of an SSE `data:` line; None for blank lines, comments and other fields. OpenAI sends each
    chunk as a single `data:` line, so multi-line events need no joining."""
    if not line.startswith("data:"):
        return None
    return line[5:].removeprefix(" ")


@dataclass(slots=True)
class Chunk:
    """What one `chat.completion.chunk` says, normalized."""

    text: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    model: str | None = None
    tool_calls: list[ToolCallDelta] = field(default_factory=list)


def parse_chunk(data: Any, model: str = "") -> Chunk:
    """One streamed chunk; UpstreamStatusError for an error object, UpstreamProtocolError if malformed."""
    if not isinstance(data, dict):
        raise UpstreamProtocolError("openai sent a non-object stream chunk", provider=PROVIDER, model=model)
    if data.get("error"):
        raise error_event(data["error"], model)
    usage, name = data.get("usage"), data.get("model")
    chunk = Chunk(usage=parse_usage(usage) if usage is not None else None, model=str(name) if name else None)
    choices = data.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue  # Rhetor asks for one choice
        delta = choice.get("delta")
        if isinstance(delta, dict):
            content = delta.get("content")
            if isinstance(content, str):
                chunk.text = content
            if delta.get("tool_calls"):
                chunk.tool_calls = parse_tool_call_deltas(delta["tool_calls"])
        reason = choice.get("finish_reason")
        if reason:
            chunk.finish_reason = finish_reason(reason)
    return chunk


class StreamState:
    """Folds the SSE lines of a Chat Completions stream into normalized events: a TextDelta per non-empty
    content delta; `end()` gives the one StreamEnd once the stream may end (after `[DONE]`, or after a
    finish_reason for servers that omit `[DONE]`) and raises UpstreamProtocolError before that."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.done = False
        self.pending: list[ToolCallDelta] = []  # tool-call deltas of the last fed chunk, drained by the caller

    def feed(self, line: str) -> TextDelta | None:
        raw = sse_data(line)
        if raw is None or self.done:
            return None
        if raw.strip() == "[DONE]":
            self.done = True
            return None
        return self.fold(self.load(raw))

    def load(self, raw: str) -> Any:
        """One chunk's JSON; UpstreamProtocolError if it is not JSON."""
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("openai sent an unparsable stream chunk", provider=PROVIDER,
                                        model=self.model) from None

    def fold(self, data: Any) -> TextDelta | None:
        """Take in one parsed chunk: its text as a TextDelta (None if it has none), its tool calls to `pending`.

        A chunk without an error or tool calls is read here as parse_chunk reads it, without building its Chunk
        (with the pass-through loop's inlining, an 8-event stream: 1382k -> 1345k instructions, callgrind); any
        other takes parse_chunk itself."""
        if type(data) is not dict or data.get("error"):
            return self._fold(data)
        choices, text, finish = data.get("choices"), "", None
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                if delta.get("tool_calls"):
                    return self._fold(data)
                content = delta.get("content")
                if isinstance(content, str):
                    text = content
            reason = choice.get("finish_reason")
            if reason:
                finish = finish_reason(reason)
        name, usage = data.get("model"), data.get("usage")
        if name:
            self.model = str(name)
        if usage is not None and (parsed := parse_usage(usage)) is not None:
            self.usage = parsed  # the last reported usage wins (the final usage chunk)
        if finish:
            self.finish = finish
        return TextDelta(text) if text else None

    def _fold(self, data: Any) -> TextDelta | None:
        chunk = parse_chunk(data, self.model)
        if chunk.model:
            self.model = chunk.model
        if chunk.usage:
            self.usage = chunk.usage  # the last reported usage wins (the final usage chunk)
        if chunk.finish_reason:
            self.finish = chunk.finish_reason
        if chunk.tool_calls:
            self.pending.extend(chunk.tool_calls)
        return TextDelta(chunk.text) if chunk.text else None

    def take(self) -> list[ToolCallDelta]:
        """The tool-call deltas accumulated since the last take (`pending`), cleared."""
        taken, self.pending = self.pending, []
        return taken

    @property
    def finished(self) -> bool:
        return self.done or self.finish is not None

    def end(self) -> StreamEnd:
        if not self.finished:
            raise UpstreamProtocolError("openai stream ended before [DONE] and without a finish_reason",
                                        provider=PROVIDER, model=self.model)
        return StreamEnd(self.finish or "stop", self.usage or Usage(), self.model)


__all__ = ["ERROR_STATUS", "FINISH_REASONS", "Chunk", "StreamState", "error_event", "finish_reason", "parse_chunk",
           "parse_response", "parse_usage", "sse_data"]
