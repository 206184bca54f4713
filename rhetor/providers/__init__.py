"""Provider registry: one import string per provider, plus aliases. Adding a provider = one module + one line.

Providers are imported on first use, so an unused vendor costs nothing at start-up. Knows nothing of routing.
"""

from __future__ import annotations

import importlib
from typing import Any

from rhetor.errors import UnknownProviderError
from rhetor.providers.base import Availability, Provider
from rhetor.settings import Settings

REGISTRY: dict[str, str] = {
    "anthropic": "rhetor.providers.anthropic:AnthropicProvider",
    "openai": "rhetor.providers.openai:OpenAIProvider",
    "ollama": "rhetor.providers.ollama:OllamaProvider",
    "gemini": "rhetor.providers.gemini:GeminiProvider",
    "simulated": "rhetor.providers.simulated:SimulatedProvider",
}
ALIASES: dict[str, str] = {"claude": "anthropic", "google": "gemini"}


def canonical(name: str) -> str:
    """The registry id for a provider name or alias; raises UnknownProviderError listing the valid ones."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise UnknownProviderError(name, [*REGISTRY, *ALIASES])
    return key


def load(name: str, settings: Settings) -> Provider:
    module_name, _, attr = REGISTRY[canonical(name)].partition(":")
    cls: Any = getattr(importlib.import_module(module_name), attr)
    provider: Provider = cls(settings)
    return provider


class Providers:
    """The live provider instances of one Rhetor process, created lazily, closed together."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._live: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        key = canonical(name)
        if key not in self._live:
            self._live[key] = load(key, self._settings)
        return self._live[key]

    def names(self) -> list[str]:
        return list(REGISTRY)

    def default_models(self) -> dict[str, str]:
        return {name: self.get(name).default_model for name in REGISTRY}

    async def availability(self) -> dict[str, Availability]:
        return {name: await self.get(name).available() for name in REGISTRY}

    async def aclose(self) -> None:
        for provider in self._live.values():
            await provider.aclose()
        self._live.clear()


__all__ = ["ALIASES", "REGISTRY", "Availability", "Provider", "Providers", "canonical", "load"]
