"""Bounded label values for the Prometheus metrics: a provider, model, component or front outside the known
catalogue becomes `other`, so no caller can grow the number of series (no context ids, no keys, no free text).
The catalogue is the task config's targets, the price table's named models, the providers' defaults and the
built-in component prompts. Knows those data; nothing of HTTP or prometheus_client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

OTHER = "other"
NONE = "none"
FRONTS = frozenset({"native", "legacy", "legacy_ws", "ws", "openai", "anthropic", "embeddings", "internal"})
# model routes by path: a request refused before routing is still counted (and logged) under its front
MODEL_PATHS: dict[str, str] = {
    "/api/v1/chat": "native", "/api/v1/chat/stream": "native", "/api/v1/generate": "native",
    "/api/v1/generate_stream": "native", "/message": "legacy", "/stream": "legacy", "/chat": "legacy",
    "/v1/chat/completions": "openai", "/v1/messages": "anthropic", "/v1/embeddings": "embeddings",
}
_BUILTIN = Path(__file__).resolve().parent.parent / "prompts" / "builtin"


def builtin_components() -> set[str]:
    return {p.stem.removeprefix("system.") for p in _BUILTIN.glob("system.*.json")}


class LabelBounds:
    def __init__(self, models: Iterable[tuple[str, str]] = (), providers: Iterable[str] = (),
                 components: Iterable[str] = ()) -> None:
        self.models = frozenset(models)
        self.providers = frozenset(providers) | {p for p, _ in self.models}
        self.components = frozenset(components)

    @classmethod
    def build(cls, targets: Iterable[tuple[str, str | None]], priced: Mapping[str, Iterable[str]],
              defaults: Mapping[str, str], extra_models: Iterable[tuple[str, str]] = (),
              components: Iterable[str] = ()) -> LabelBounds:
        models = {(p, m) for p, m in targets if m} | {(p, m) for p, m in defaults.items()} | set(extra_models)
        models |= {(p, m) for p, names in priced.items() for m in names if m != "*"}
        return cls(models, [*defaults, *priced], {*builtin_components(), *components})

    def provider(self, provider: str | None) -> str:
        if provider is None:
            return NONE
        return provider if provider in self.providers else OTHER

    def model(self, provider: str | None, model: str | None) -> str:
        if model is None:
            return NONE
        return model if (provider, model) in self.models else OTHER

    def component(self, component: str | None) -> str:
        if not component:
            return NONE
        return component if component in self.components else OTHER


def front(name: str) -> str:
    return name if name in FRONTS else OTHER


def status_class(code: int) -> str:
    """The outcome label of a request refused before routing (no usage record), from its HTTP status."""
    return _STATUS.get(code) or ("internal_error" if code >= 500 else "ok" if code < 400 else "invalid_request_error")


_STATUS = {400: "invalid_request_error", 401: "authentication_error", 403: "forbidden", 404: "not_found",
           405: "method_not_allowed", 408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type",
           422: "invalid_request_error", 429: "rate_limited", 503: "unavailable"}

__all__ = ["FRONTS", "MODEL_PATHS", "NONE", "OTHER", "LabelBounds", "builtin_components", "front", "status_class"]
