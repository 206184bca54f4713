"""Model names as the OpenAI- and Anthropic-compatible fronts receive them, resolved to routing fields.

A pure function, no I/O: `resolve_model_name` turns the `model` string of a standard client (plus the optional
`x-rhetor-task` header) into a `ModelRoute` the gateway understands, and `pinned` narrows a route to the one
target a caller named. Knows provider names through the registry's `canonical`, never provider classes.

Forms, in order:
    alias                 from RHETOR_MODEL_ALIASES (one level; the target is any form below)
    rhetor, rhetor/<task> a task route: the router's chain for <task> (default: "default"), with fallback
    <provider>/<model>    that model on that provider (aliases such as claude/ accepted), pinned: no fallback
    <bare model>          claude-* = anthropic, gpt-*/o1*/o3*/o4*/chatgpt-*/text-embedding-* = openai,
                          gemini-* = gemini, simulated-* = simulated; pinned
With the header `x-rhetor-task: <task>` the request takes that task's chain; a model that names a provider
model becomes the chain's first target (the rest stays as fallback), `rhetor`/`rhetor/<task>` names none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from rhetor.errors import ConfigError, InvalidRequestError, ModelNotFoundError, UnknownProviderError
from rhetor.providers import REGISTRY, canonical
from rhetor.routing.names import BARE_PREFIXES
from rhetor.routing.router import Route

TASK_PREFIX = "rhetor"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    provider_id: str | None = None
    model_id: str | None = None
    task_type: str | None = None
    pinned: bool = False  # the caller named one model: no fallback chain, no task-entry defaults

    @property
    def label(self) -> str:
        """The model name to report back when the answer does not name one."""
        return f"{self.provider_id}/{self.model_id}" if self.provider_id else f"{TASK_PREFIX}/{self.task_type}"


def _explicit(name: str) -> tuple[str, str] | None:
    """(provider, model) for `provider/model` or a recognisable bare model name; None if neither."""
    head, sep, tail = name.partition("/")
    if sep and tail:
        try:
            return canonical(head), tail
        except UnknownProviderError:
            return None
    if sep:
        return None
    lowered = name.lower()
    for prefixes, provider in BARE_PREFIXES:
        if lowered.startswith(prefixes):
            return provider, name
    return None


def resolve_model_name(model: str, *, aliases: Mapping[str, str] | None = None,
                       task_header: str | None = None, deployments: Mapping[str, str] | None = None,
                       listed: Mapping[str, str] | None = None) -> ModelRoute:
    """The routing fields for a compat request's `model` (and `x-rhetor-task`); ModelNotFoundError if none fit.
    With a providers file, `deployment/model` and a model a deployment lists resolve too (`deployments`: name ->
    kind, `listed`: model -> kind), and `x/model` naming no provider or deployment is a 400 listing them."""
    name = model.strip()
    if not name:
        raise InvalidRequestError("model must be a non-empty string", param="model")
    if aliases and name in aliases:
        name = aliases[name]
    task = (task_header or "").strip().lower() or None
    head, sep, tail = name.partition("/")
    if head.lower() == TASK_PREFIX:
        return ModelRoute(task_type=task or (tail.strip().lower() if sep and tail.strip() else "default"))
    explicit = _explicit(name)
    if deployments and explicit is None:
        if sep and tail and head in deployments:
            explicit = (head, tail)
        elif listed and name in listed:
            explicit = (listed[name], name)
        elif sep and tail:
            raise UnknownProviderError(head, [*deployments, *REGISTRY])
    if explicit is None:
        raise ModelNotFoundError(
            f"The model {model!r} does not exist: use provider/model (providers: anthropic, openai, gemini, "
            f"ollama, simulated), a configured alias, or {TASK_PREFIX}/<task> for a routed task")
    provider, model_id = explicit
    if task is not None:
        return ModelRoute(provider, model_id, task, pinned=False)
    return ModelRoute(provider, model_id, None, pinned=True)


class ModelNames:
    """`resolve_model_name` memoized per (model, task header): a front resolves each distinct name once for the
    aliases, deployments and listed models in place (benchmarks/instructions.py `oa` profile: ~14 Python calls a
    request, the same answer each time). Bounded (the oldest name goes first past `size`) and emptied when the
    deployments or listed models are other objects than before (a reload swaps them: rhetor.config.reload); a
    name that does not resolve is never memoized (it raises each time)."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self._basis: tuple[object, ...] = ()
        self._known: dict[tuple[str, str | None], ModelRoute] = {}

    def resolve(self, model: str, aliases: Mapping[str, str], task_header: str | None,
                deployments: Mapping[str, str], listed: Mapping[str, str]) -> ModelRoute:
        # (positional or keyword: the compat fronts pass them positionally, ~0.5k instructions a keyword)
        basis = self._basis
        if len(basis) != 3 or basis[0] is not aliases or basis[1] is not deployments or basis[2] is not listed:
            self._basis, self._known = (aliases, deployments, listed), {}
        key = (model, task_header)
        found = self._known.get(key)
        if found is None:
            found = resolve_model_name(model, aliases=aliases, task_header=task_header, deployments=deployments,
                                       listed=listed)
            if len(self._known) >= self.size:
                del self._known[next(iter(self._known))]
            self._known[key] = found
        return found


def validate_aliases(aliases: Mapping[str, str]) -> None:
    """Raise ConfigError naming the first alias whose target is not a resolvable model name."""
    for alias, target in aliases.items():
        if not alias.strip() or target in aliases:
            raise ConfigError(f"RHETOR_MODEL_ALIASES: {alias!r}: an alias must name a model, not another alias")
        try:
            resolve_model_name(target)
        except InvalidRequestError as exc:
            raise ConfigError(f"RHETOR_MODEL_ALIASES: {alias!r} -> {target!r}: {exc.message}") from None


def pinned(route: Route, request_options: Mapping[str, Any]) -> Route:
    """`route` narrowed to its first target (the caller's model) with only the caller's own options."""
    return replace(route, targets=route.targets[:1], options=pinned_options(request_options))


def pinned_options(request_options: Mapping[str, Any]) -> dict[str, Any]:
    """A pinned route's options: the caller's own that are set, no task-entry defaults."""
    return {k: v for k, v in request_options.items() if v is not None}


__all__ = ["ModelNames", "ModelRoute", "pinned", "pinned_options", "resolve_model_name", "validate_aliases"]
