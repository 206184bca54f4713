"""The one normalized type system: messages, requests, responses, usage and stream events.

Every provider translates to and from these; the web layer frames them. This module knows nothing of any
vendor wire format, of HTTP, or of routing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call: a name, what it does, and its arguments as a JSON Schema object."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model made: `arguments` is the JSON text of the arguments object, as the model wrote it."""

    id: str
    name: str
    arguments: str = "{}"


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """How the model may use tools: "auto", "none", "required" (some tool), or "tool" (the one named).
    `parallel=False` asks for at most one call per turn; None leaves the vendor's default."""

    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None
    parallel: bool | None = None


@dataclass(slots=True)
class Message:
    """One turn. An assistant turn may carry `tool_calls`; a `tool` turn answers the call `tool_call_id`
    (its `content` is the tool's result, `is_error` marks a failed call)."""

    role: Role
    content: str
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False


@dataclass(slots=True)
class Usage:
    """Tokens of one answer. `cached_input_tokens` (read from the vendor's prompt cache) and `cache_write_tokens`
    are parts of `input_tokens`; `reasoning_tokens` are part of `output_tokens` (they price differently)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class ChatRequest:
    """What a provider is asked: one model, the conversation, and sampling parameters.

    `system` is kept apart from `messages` because half the vendors want it apart; providers that want it
    inline prepend it themselves.
    """

    model: str
    messages: list[Message]
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    timeout_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    # {"type": "json_object"} or {"type": "json_schema", "json_schema": {...}} (OpenAI's shape, the common one)
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    user: str | None = None


@dataclass(slots=True)
class ChatResponse:
    content: str
    model: str
    provider: str
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    simulated: bool = False
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_sequence: str | None = None  # which of the request's stop sequences ended the answer, if known


@dataclass(slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a tool call. The first piece of call `index` carries its `id` and `name`; later pieces
    carry only more `arguments` text. Concatenating a call's `arguments` gives its JSON arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    kind: Literal["tool_call"] = "tool_call"


@dataclass(slots=True)
class StreamEnd:
    """The last event of a successful stream."""

    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    kind: Literal["end"] = "end"
    stop_sequence: str | None = None


@dataclass(slots=True)
class StreamError:
    """A failure after the stream was committed to the caller; always the last event."""

    error: str
    type: str
    retryable: bool = False
    kind: Literal["error"] = "error"


# What a provider yields: deltas, then exactly one StreamEnd (or it raises).
ProviderEvent = TextDelta | ToolCallDelta | StreamEnd
# What the gateway yields to the web layer: a provider event, or one terminal StreamError.
StreamEvent = TextDelta | ToolCallDelta | StreamEnd | StreamError

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "FinishReason",
    "Message",
    "ProviderEvent",
    "Role",
    "StreamEnd",
    "StreamError",
    "StreamEvent",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "ToolSpec",
    "Usage",
]
