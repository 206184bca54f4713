"""OpenAI-compatible services behind a preset (rhetor.providers.presets): Groq, Together, DeepSeek, Mistral,
Fireworks, OpenRouter, xAI, Perplexity and local servers (vLLM, llama.cpp server, LM Studio).

The one place their quirks are handled: a `seed` the server names otherwise, a `stream_options` it refuses,
usage delivered somewhere else in the stream, cached tokens under another name, no key for a local server,
model discovery from GET /models (cached) or the preset's list. Everything else is the OpenAI provider's pure
translation. Its `wire` is "openai-compatible", so a caller's OpenAI body is translated, never relayed verbatim
to a server that would trip on it. Knows nothing of routing, deployments' key pools or balancing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from rhetor.errors import ProviderError, UpstreamProtocolError
from rhetor.providers.base import Availability, AvailabilityCache
from rhetor.providers.listing import Listing, LiveModels, fetch_openai
from rhetor.providers.openai import OpenAIProvider, build_payload
from rhetor.providers.openai_reply import StreamState, parse_response
from rhetor.providers.presets import Preset
from rhetor.settings import Settings
from rhetor.types import ChatRequest, ChatResponse, ProviderEvent, TextDelta


def _dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def normalize(data: Any, preset: Preset) -> Any:
    """A chunk or completion in OpenAI's own shape: usage moved to `usage`, cached tokens to their field."""
    if not isinstance(data, dict):
        return data
    if preset.usage_at and data.get("usage") is None and isinstance(moved := _dig(data, preset.usage_at), dict):
        data["usage"] = moved
    usage = data.get("usage")
    if preset.cached_field and isinstance(usage, dict) and isinstance(usage.get(preset.cached_field), int):
        details = usage.get("prompt_tokens_details")
        details = dict(details) if isinstance(details, dict) else {}
        details.setdefault("cached_tokens", usage[preset.cached_field])
        usage["prompt_tokens_details"] = details
    return data


def payload(request: ChatRequest, preset: Preset, *, stream: bool = False) -> dict[str, Any]:
    """The Chat Completions body, adjusted to what `preset`'s server accepts."""
    body = build_payload(request, stream=stream)
    if preset.seed_field != "seed" and "seed" in body:
        body[preset.seed_field] = body.pop("seed")
    if not preset.stream_options:
        body.pop("stream_options", None)
    return body


class CompatStreamState(StreamState):
    """OpenAI's stream folding, fed chunks normalized for the preset first."""

    def __init__(self, model: str, preset: Preset) -> None:
        super().__init__(model)
        self._preset = preset

    def feed(self, line: str) -> TextDelta | None:
        if not line.startswith("data:") or self.done:
            return None  # comments (OpenRouter's ": OPENROUTER PROCESSING") and other fields carry nothing
        raw = line[5:].strip()
        if raw == "[DONE]":
            self.done = True
            return None
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"{self._preset.name} sent an unparsable stream chunk", provider="openai",
                                        model=self.model) from None
        return self.fold(normalize(data, self._preset))


class CompatibleProvider(OpenAIProvider):
    wire = "openai-compatible"

    def __init__(self, settings: Settings, preset: Preset, *, label: str | None = None) -> None:
        super().__init__(settings)
        self.preset = preset
        self._http.provider = label or preset.name  # errors name the deployment, not "openai"
        self._probe = AvailabilityCache(self._reach, settings.availability_ttl_s)
        no_key = "" if preset.local or self._key else f"{preset.key_env or 'api_key'} not set"
        self._listing = LiveModels(self._http, fetch_openai, self._preset_models, settings,
                                   disabled=no_key if preset.discover else f"{preset.name} has no GET /models")

    async def _preset_models(self) -> list[str]:
        return list(self.preset.models)

    def _require_key(self, model: str) -> None:
        if not self.preset.local:
            super()._require_key(model)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self._require_key(request.model)
        data = await self._http.request_json("POST", "/chat/completions", payload(request, self.preset),
                                             model=request.model, timeout_s=request.timeout_s)
        try:
            return parse_response(normalize(data, self.preset), request.model)
        except ProviderError as exc:
            raise self._http.scrub(exc) from None

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        self._require_key(request.model)
        return self._http.events("/chat/completions", payload(request, self.preset, stream=True),
                                 CompatStreamState(request.model, self.preset), model=request.model,
                                 timeout_s=request.timeout_s)

    async def models(self) -> list[str]:
        """What the server lists (the one cached, bounded listing of `listed_models`) when it can discover;
        else the preset's list."""
        if not self.preset.discover:
            return list(self.preset.models)
        return list((await self._listing.get()).models)

    async def listed_models(self) -> Listing:
        """GET /models, cached (rhetor.providers.listing); the preset's list when the server has none or fails."""
        return await self._listing.get()

    async def _reach(self) -> Availability:
        try:
            await self._http.request_json("GET", "/models", timeout_s=2.0)
        except ProviderError as exc:
            if getattr(exc, "upstream_status", None) is not None:
                return Availability(True, f"{self.preset.name} server answers at {self._http.base_url}")
            return Availability(False, f"{self.preset.name} server not reachable at {self._http.base_url}")
        return Availability(True, f"{self.preset.name} server at {self._http.base_url}")

    async def available(self) -> Availability:
        if self.preset.local:
            return await self._probe.get()
        if self._key:
            return Availability(True, f"{self.preset.key_env or 'key'} set")
        return Availability(False, f"{self.preset.key_env or 'api_key'} not set")


__all__ = ["CompatStreamState", "CompatibleProvider", "normalize", "payload"]
