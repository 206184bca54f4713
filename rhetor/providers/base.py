"""The provider protocol and the small pieces every provider shares.

A provider turns a normalized `ChatRequest` into a vendor call and the vendor's answer back into
`ChatResponse` / `ProviderEvent`s, raising only `rhetor.errors` exceptions. It knows nothing of routing,
fallback, contexts or HTTP framing toward Rhetor's callers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rhetor.types import ChatRequest, ChatResponse, ProviderEvent, StreamEnd, TextDelta, ToolCallDelta


@dataclass(frozen=True, slots=True)
class Availability:
    ok: bool
    reason: str = ""


@runtime_checkable
class Provider(Protocol):
    name: str
    default_model: str

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        """Yield `TextDelta`s then exactly one `StreamEnd`; raise `ProviderError` on failure."""
        ...

    async def models(self) -> list[str]: ...

    async def available(self) -> Availability: ...

    def context_window(self, model: str) -> int: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    model: str
    input_tokens: int = 0


@runtime_checkable
class EmbeddingProvider(Protocol):
    """An optional capability: providers that can embed text implement this too."""

    async def embed(self, texts: list[str], model: str | None = None) -> Embeddings: ...

    def embedding_models(self) -> list[str]: ...


@runtime_checkable
class TokenCounter(Protocol):
    """An optional capability: providers whose vendor counts tokens (Gemini's countTokens) implement this."""

    async def count_tokens(self, request: ChatRequest) -> int: ...


class LineDecoder(Protocol):
    """A provider's pure parser for one line-framed stream (SSE or NDJSON): `feed` each non-blank line (blank ones
    are skipped: SSE's separators carry nothing for a format of one `data:` line per event), drain `pending`
    (tool-call deltas) after each, and `end()` gives the one StreamEnd or raises if the stream may not end yet.
    `finished` says the terminator was seen, so a connection cut after it loses nothing."""

    pending: list[ToolCallDelta]

    @property
    def finished(self) -> bool: ...

    def feed(self, line: str) -> TextDelta | None: ...

    def end(self) -> StreamEnd: ...


class AvailabilityCache:
    """Caches an availability probe for `ttl_s` so checks stay cheap and never hammer the upstream."""

    def __init__(self, probe: Callable[[], Awaitable[Availability]], ttl_s: float) -> None:
        self._probe = probe
        self._ttl = ttl_s
        self._value: Availability | None = None
        self._at = 0.0

    async def get(self) -> Availability:
        now = time.monotonic()
        if self._value is None or now - self._at > self._ttl:
            self._value = await self._probe()
            self._at = time.monotonic()
        return self._value

    def invalidate(self) -> None:
        self._value = None


def add_relayed(events: list[ProviderEvent], event: ProviderEvent) -> None:
    """Append a relayed stream's normalized event, a run of text as one TextDelta. Only for pass-through streams,
    whose front relays the RawFrames and reads these for the record (text, usage), never frames them."""
    last = events[-1] if events else None
    if isinstance(event, TextDelta) and isinstance(last, TextDelta):
        last.text += event.text
    else:
        events.append(event)


def estimate_tokens(text: str) -> int:
    """A cheap, offline token estimate (~4 characters per token); used for trimming, never for billing."""
    return max(1, (len(text) + 3) // 4)


__all__ = ["Availability", "AvailabilityCache", "EmbeddingProvider", "Embeddings", "LineDecoder", "Provider",
           "TokenCounter", "add_relayed", "estimate_tokens"]
