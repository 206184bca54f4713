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


@dataclass(frozen=True, slots=True)
class Image:
    """An image input: a URL, or base64 `data` with its `media_type`. `where` names the caller's block
    (`messages[0].content[1]`) for errors."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    where: str = ""

    @property
    def data_url(self) -> str:
        return self.url if self.url is not None else f"data:{self.media_type or 'image/png'};base64,{self.data}"


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
    # where this turn came from in the caller's own body (`Passthrough.body["messages"][raw_index]`): a same-vendor
    # upstream gets that dict as sent; None = Rhetor's addition (stored history), built from the fields above
    raw_index: int | None = None
    images: list[Image] | None = None  # image inputs of a user turn, after its text


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
class Reasoning:
    """How hard the model should think: OpenAI's `reasoning_effort` ("minimal", "low", "medium", "high") or
    Anthropic's thinking `budget_tokens`; a provider uses the one its vendor takes (rhetor.providers.fidelity
    maps between them)."""

    effort: str | None = None
    budget_tokens: int | None = None


@dataclass(slots=True)
class Passthrough:
    """The caller's own request as its front received it (`api`: "openai" Chat Completions or "anthropic"
    Messages), for lossless same-vendor forwarding: an upstream speaking `api` is sent `body` with only the model
    rewritten and Rhetor's additions spliced in, plus `headers` (anthropic-beta, ...). Any other upstream gets the
    normalized fields, and what it cannot honour is refused or, `lenient`, dropped and listed in `dropped` (set
    per attempt by rhetor.providers.fidelity). `system` is the caller's own system text, so Rhetor's addition to
    the system prompt can be told apart; `parts` names content blocks only the same vendor takes."""

    api: Literal["openai", "anthropic"]
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    system: str | None = None
    parts: list[str] = field(default_factory=list)
    lenient: bool = False
    dropped: list[str] = field(default_factory=list)
    forward: bool = True  # False (RHETOR_PASSTHROUGH=0): a same-vendor upstream takes the translated path too


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
    reasoning: Reasoning | None = None
    service_tier: str | None = None
    passthrough: Passthrough | None = None  # set by the OpenAI/Anthropic chat fronts only (see Passthrough)


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
    reasoning: str = ""  # the model's visible reasoning (Anthropic thinking, `reasoning_content`), when given
    raw: bytes | None = None  # a same-vendor upstream's body as received, relayed as-is (Passthrough)


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
class ReasoningDelta:
    """A piece of the model's visible reasoning. Only yielded for requests with a `Passthrough` (the fronts that
    frame it); other consumers never see it."""

    text: str
    kind: Literal["reasoning"] = "reasoning"


@dataclass(slots=True)
class RawFrame:
    """Events of a same-vendor upstream's stream (those of one network read), as received with their SSE framing,
    for the front to relay. Only yielded for requests with a `Passthrough` of the provider's own API; the normalized
    events still follow."""

    data: bytes
    kind: Literal["raw"] = "raw"


@dataclass(slots=True)
class StreamError:
    """A failure after the stream was committed to the caller; always the last event."""

    error: str
    type: str
    retryable: bool = False
    kind: Literal["error"] = "error"


# What a provider yields: deltas, then exactly one StreamEnd (or it raises).
ProviderEvent = TextDelta | ToolCallDelta | StreamEnd | ReasoningDelta | RawFrame
# What the gateway yields to the web layer: a provider event, or one terminal StreamError.
StreamEvent = TextDelta | ToolCallDelta | StreamEnd | StreamError | ReasoningDelta | RawFrame

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "FinishReason",
    "Image",
    "Message",
    "Passthrough",
    "ProviderEvent",
    "RawFrame",
    "Reasoning",
    "ReasoningDelta",
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
