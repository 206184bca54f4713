"""The one normalized type system: messages, requests, responses, usage and stream events.

Every provider translates to and from these; the web layer frames them. This module knows nothing of any
vendor wire format, of HTTP, or of routing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error", "cancelled"]


@dataclass(slots=True)
class Message:
    role: Role
    content: str


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

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


@dataclass(slots=True)
class ChatResponse:
    content: str
    model: str
    provider: str
    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    simulated: bool = False


@dataclass(slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str
    kind: Literal["text"] = "text"


@dataclass(slots=True)
class StreamEnd:
    """The last event of a successful stream."""

    finish_reason: FinishReason = "stop"
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    kind: Literal["end"] = "end"


@dataclass(slots=True)
class StreamError:
    """A failure after the stream was committed to the caller; always the last event."""

    error: str
    type: str
    retryable: bool = False
    kind: Literal["error"] = "error"


# What a provider yields: deltas, then exactly one StreamEnd (or it raises).
ProviderEvent = TextDelta | StreamEnd
# What the gateway yields to the web layer: a provider event, or one terminal StreamError.
StreamEvent = TextDelta | StreamEnd | StreamError

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
    "Usage",
]
