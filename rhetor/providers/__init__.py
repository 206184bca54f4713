"""Provider registry: one import string per provider, plus aliases. Adding a provider = one module + one line.

Providers are imported on first use, so an unused vendor costs nothing at start-up. Knows nothing of routing.
`Providers` also holds the deployments of the providers file (RHETOR_PROVIDERS, rhetor.providers.deployments):
each a named, configured instance of a provider kind (rhetor.providers.pool); the kinds' own names stay the
deployments configured from the environment (OPENAI_API_KEY, ...), unless the file names one of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rhetor.errors import UnknownProviderError
from rhetor.providers.base import Availability, Provider
from rhetor.settings import Settings

if TYPE_CHECKING:
    from rhetor.providers.deployments import Deployments, DeploymentSpec

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

    def __init__(self, settings: Settings, deployments: Deployments | None = None) -> None:
        self._settings = settings
        self._live: dict[str, Provider] = {}
        if deployments is None and settings.providers_file is not None:
            from rhetor.providers.deployments import load_deployments

            deployments = load_deployments(settings.providers_file)
        self.deployments: dict[str, DeploymentSpec] = deployments.by_name() if deployments else {}
        self.strategy = deployments.strategy if deployments else "least-inflight"
        self._groups: dict[tuple[str, str], tuple[str, ...]] = {}

    def get(self, name: str) -> Provider:
        live = self._live.get(name)
        if live is not None:
            return live
        spec = self.deployments.get(name)
        if spec is None:
            key = canonical(name)
            spec = self.deployments.get(key)
            if key in self._live:
                return self._live[key]
        else:
            key = name
        if spec is not None:
            from rhetor.providers.pool import build

            self._live[key] = build(spec, self._settings, load)
        else:
            self._live[key] = load(key, self._settings)
        return self._live[key]

    def names(self) -> list[str]:
        return [*REGISTRY, *(n for n in self.deployments if n not in REGISTRY)]

    def kind_of(self, name: str) -> str:
        """The provider kind of a deployment name or a provider name/alias (UnknownProviderError if neither)."""
        spec = self.deployments.get(name)
        return spec.kind if spec is not None else canonical(name)

    def deployment_kinds(self) -> dict[str, str]:
        """Deployment name -> kind, for the router (names a request or a route may use besides the kinds)."""
        return {name: spec.kind for name, spec in self.deployments.items()}

    def group(self, kind: str, model: str) -> tuple[str, ...]:
        """The deployments that serve `model` of `kind`: those listing it explicitly, else every deployment of
        the kind that serves any model; the environment's deployment (named as the kind) joins when it has a
        key or no deployment of the file serves the model. Cached: the file does not change while serving."""
        found = self._groups.get((kind, model))
        if found is not None:
            return found
        specs = [s for s in self.deployments.values() if s.kind == kind]
        explicit = [s.name for s in specs if s.models and model in s.models]
        names = explicit or [s.name for s in specs if s.models is None]
        if kind not in names and (not names or self._env_configured(kind)):
            names.append(kind)
        self._groups[(kind, model)] = found = tuple(names)
        return found

    def weight(self, name: str) -> float:
        spec = self.deployments.get(name)
        return spec.weight if spec is not None else 1.0

    def listed(self) -> dict[str, str]:
        """Model -> kind for every model a deployment lists by name (bare names resolve through it first)."""
        out: dict[str, str] = {}
        for spec in self.deployments.values():
            for model in spec.models or ():
                out.setdefault(model, spec.kind)
        return out

    def served_by(self, model: str) -> str | None:
        """The kind of the deployments that list `model` by name (for a bare model no name pattern knows)."""
        return next((s.kind for s in self.deployments.values() if s.models and model in s.models), None)

    def _env_configured(self, kind: str) -> bool:
        s = self._settings
        if kind in self.deployments:
            return True
        keyed = {"openai": s.openai_api_key, "anthropic": s.anthropic_api_key, "gemini": s.gemini_api_key}
        return kind not in keyed or keyed[kind] is not None

    def default_models(self) -> dict[str, str]:
        """Each provider's and deployment's default model (a deployment listing models: its first)."""
        out = {name: self.get(name).default_model for name in REGISTRY}
        for name, spec in self.deployments.items():
            out[name] = spec.models[0] if spec.models else self.get(name).default_model
        return out

    async def availability(self) -> dict[str, Availability]:
        return {name: await self.get(name).available() for name in self.names()}

    async def aclose(self) -> None:
        for provider in self._live.values():
            await provider.aclose()
        self._live.clear()


__all__ = ["ALIASES", "REGISTRY", "Availability", "Provider", "Providers", "canonical", "load"]
