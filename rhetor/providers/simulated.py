"""The simulated provider: answers with no key and no network, keeping the original Rhetor's models,
delays, chunk sizes and reply text, plus scenario models for failure testing.

Models: `simulated-fast` (0.5 s, 10-char chunks every 0.02 s), `simulated-standard` (1.0 s, 5 / 0.05 s),
`simulated-advanced` (2.0 s, 3 / 0.08 s). Delays scale by `RHETOR_SIMULATED_DELAY_SCALE` (0 = instant).
Scenario models: `simulated-fail-<status>` raises that upstream status (429 and 529 carry Retry-After 0),
`simulated-unreachable` raises a connect error, `simulated-cut-<n>` streams n chunks and then breaks.
Tools and JSON response formats: see `simulated_tools`; embeddings (`simulated-embedding`, 384 dims): see
`simulated_embed`. Knows nothing of routing or contexts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from rhetor.errors import (
    UnknownModelError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from rhetor.providers.base import Availability, Embeddings, estimate_tokens
from rhetor.providers.simulated_embed import MODEL as EMBEDDING_MODEL
from rhetor.providers.simulated_embed import embed_text
from rhetor.providers.simulated_tools import shape_text, tool_call, tool_result_text
from rhetor.settings import Settings
from rhetor.types import ChatRequest, ChatResponse, ProviderEvent, StreamEnd, TextDelta, ToolCallDelta, Usage

# model -> (non-streaming delay s, chunk size chars, gap between chunks s)
TIMINGS: dict[str, tuple[float, int, float]] = {
    "simulated-fast": (0.5, 10, 0.02),
    "simulated-standard": (1.0, 5, 0.05),
    "simulated-advanced": (2.0, 3, 0.08),
}
SCENARIO_EXAMPLES = ["simulated-fail-429", "simulated-fail-529", "simulated-fail-500", "simulated-unreachable",
                     "simulated-cut-3"]
_PLAIN_TAIL = {
    "simulated-advanced": "\n\nAs the advanced simulation model, I would typically provide more detailed and nuanced "
    "responses with better reasoning capabilities.",
    "simulated-fast": "\n\nAs the fast simulation model, I would typically provide quicker but potentially less "
    "detailed responses.",
}
_CHAT_TAIL = {
    "simulated-advanced": "\n\nAs the advanced simulation model, I would typically maintain better context across a "
    "conversation thread.",
    "simulated-fast": "\n\nAs the fast simulation model, I would typically provide quicker responses with less "
    "context retention.",
}


def reply_text(request: ChatRequest, family: str) -> str:
    """The original simulated reply: the single-message form, or the chat form for a conversation."""
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "No message found")
    if len(request.messages) <= 1:
        text = (f'I received your message: "{last_user}". This is a simulated response as no real LLM is '
                "available. Please configure Rhetor with valid API keys for Anthropic, OpenAI, or ensure Ollama "
                "is running for local LLM access.")
        tail = _PLAIN_TAIL
    else:
        text = (f'I received your message: "{last_user}". I see a conversation with {len(request.messages)} '
                "messages. This is a simulated chat response as no real LLM is available. ")
        tail = _CHAT_TAIL
    if request.system:
        preview = request.system[:50] + "..." if len(request.system) > 50 else request.system
        text += f'\n\nThe system prompt was: "{preview}"'
    return text + tail.get(family, "")


class SimulatedProvider:
    name = "simulated"
    default_model = "simulated-standard"

    def __init__(self, settings: Settings) -> None:
        self._scale = settings.simulated_delay_scale

    def _resolve(self, model: str) -> tuple[str, str | None, int | None]:
        """(timing family, failure scenario or None, cut-after-n or None)."""
        if model in TIMINGS:
            return model, None, None
        rest = model.removeprefix("simulated-")
        if rest.startswith("fail-") and rest[5:].isdigit():
            return "simulated-fast", rest, None
        if rest == "unreachable":
            return "simulated-fast", rest, None
        if rest.startswith("cut-") and rest[4:].isdigit():
            return "simulated-fast", None, int(rest[4:])
        raise UnknownModelError(self.name, model, [*TIMINGS, *SCENARIO_EXAMPLES])

    def _fail(self, scenario: str, model: str) -> None:
        if scenario == "unreachable":
            raise UpstreamConnectError("could not reach simulated upstream (scenario)", provider=self.name,
                                       model=model)
        status = int(scenario[5:])
        etype = "overloaded_error" if status == 529 else None
        raise UpstreamStatusError(f"simulated answered {status} (scenario)", status=status, provider=self.name,
                                  model=model, retry_after=0.0 if status in (429, 529) else None,
                                  upstream_type=etype)

    async def _sleep(self, seconds: float) -> None:
        if self._scale > 0:
            await asyncio.sleep(seconds * self._scale)

    def _usage(self, request: ChatRequest, text: str) -> Usage:
        prompt = sum(estimate_tokens(m.content) for m in request.messages)
        return Usage(prompt + (estimate_tokens(request.system) if request.system else 0), estimate_tokens(text))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        family, scenario, cut = self._resolve(request.model)
        if scenario:
            self._fail(scenario, request.model)
        if cut is not None:
            raise UpstreamProtocolError("simulated upstream cut the response (scenario)", provider=self.name,
                                        model=request.model)
        await self._sleep(TIMINGS[family][0])
        call = tool_call(request)
        if call is not None:
            usage = self._usage(request, call.arguments)
            return ChatResponse("", request.model, self.name, "tool_calls", usage, simulated=True, tool_calls=[call])
        text, seq = self._text(request, family)
        return ChatResponse(text, request.model, self.name, "stop", self._usage(request, text), simulated=True,
                            stop_sequence=seq)

    def _text(self, request: ChatRequest, family: str) -> tuple[str, str | None]:
        """The reply, cut before the first of the request's stop sequences it contains (and that sequence)."""
        text = shape_text(request, tool_result_text(request) or reply_text(request, family))
        # Strings only: a provider never trusts a caller's types (rhetor.routing.options checks them at the edge).
        hits = [(text.index(s), s) for s in request.stop or [] if isinstance(s, str) and s and s in text]
        if not hits:
            return text, None
        at, seq = min(hits)
        return text[:at], seq

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        family, scenario, cut = self._resolve(request.model)
        if scenario:
            self._fail(scenario, request.model)
        _, size, gap = TIMINGS[family]
        call = tool_call(request)
        if call is not None:
            yield ToolCallDelta(0, call.id, call.name)
            for i in range(0, len(call.arguments), size):
                await self._sleep(gap)
                yield ToolCallDelta(0, arguments=call.arguments[i : i + size])
            yield StreamEnd("tool_calls", self._usage(request, call.arguments), request.model)
            return
        text, seq = self._text(request, family)
        for n, i in enumerate(range(0, len(text), size)):
            if cut is not None and n >= cut:
                raise UpstreamProtocolError("simulated upstream cut the stream (scenario)", provider=self.name,
                                            model=request.model)
            if n:
                await self._sleep(gap)
            yield TextDelta(text[i : i + size])
        yield StreamEnd("stop", self._usage(request, text), request.model, stop_sequence=seq)

    async def models(self) -> list[str]:
        return list(TIMINGS)

    def embedding_models(self) -> list[str]:
        return [EMBEDDING_MODEL]

    async def embed(self, texts: list[str], model: str | None = None) -> Embeddings:
        """Deterministic hashed bag-of-words vectors (rhetor.providers.simulated_embed: 384 dims, unit length)."""
        if model not in (None, EMBEDDING_MODEL):
            raise UnknownModelError(self.name, model, [EMBEDDING_MODEL])
        return Embeddings([embed_text(t) for t in texts], EMBEDDING_MODEL, sum(estimate_tokens(t) for t in texts))

    async def available(self) -> Availability:
        return Availability(True, "always available (no network, no key)")

    def context_window(self, model: str) -> int:
        return 8192

    async def aclose(self) -> None:
        return None


__all__ = ["SimulatedProvider", "reply_text"]
