"""The router: a pure function from (config, request routing fields) to an ordered chain of targets.

No I/O of any kind — no network, no files, no clock — so it is tested without a network. It does not check
whether a model exists (that needs the provider; the gateway does it) nor whether a provider is available
(the fallback runner does). Knows provider names only through the registry's `canonical`.

Order of the chain:
    1. the primary: the request's provider/model override if any, else the entry's first target (a model
       named without a provider runs on the provider that serves it: rhetor.routing.names);
    2. the request's options.fallback_provider/fallback_model, if set (null = ignore);
    3. the rest of the entry's chain (targets, then its own options.fallback_*);
    4. simulated/<default model>, unless the entry says "simulated_fallback": false or simulated is present.
Identical provider/model pairs are kept once, at their first position.

Deployments (the providers file, rhetor.providers.deployments) come in as a plain mapping name -> kind, so this
stays pure: `deployment/model` (or provider_id = a deployment) pins that deployment (Target.deployment);
`provider/model` and bare models leave `deployment` unset, and the fallback runner picks among the deployments
serving them (rhetor.routing.balance). With deployments configured, `x/model` whose head is neither a provider
nor a deployment (nor a model a deployment lists) is a 400 listing the valid names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rhetor.errors import InvalidRequestError, UnknownProviderError
from rhetor.providers import REGISTRY, canonical
from rhetor.routing.config import (
    DEFAULT_RETRIES,
    ROUTING_OPTION_KEYS,
    SIMULATED,
    TargetSpec,
    TaskConfig,
    resolve_model,
)
from rhetor.routing.names import provider_for_model, split_model


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str
    timeout_s: float | None = None
    retries: int = DEFAULT_RETRIES
    deployment: str | None = None  # the named deployment serving it; None = any deployment of `provider`

    @property
    def key(self) -> tuple[str, str]:
        """What breakers and cool-downs count by: (deployment or provider, model)."""
        return (self.deployment or self.provider, self.model)


@dataclass(frozen=True, slots=True)
class Route:
    key: str  # the tasks.json key that matched
    component: str | None
    task_type: str
    targets: tuple[Target, ...]
    options: dict[str, Any]  # merged sampling options, routing keys removed
    strategy: str | None = None  # the entry's balancing strategy among deployments (None: the default)


def component_of(component: str | None, context_id: str | None) -> str | None:
    """The explicit component if given, else the prefix before ':' of the context id; lower-cased."""
    if component and component.strip():
        return component.strip().lower()
    if context_id and ":" in context_id:
        prefix = context_id.split(":", 1)[0].strip().lower()
        return prefix or None
    return None


def lookup_keys(component: str | None, task_type: str) -> list[str]:
    """Candidate keys in lookup order: component_task, component, task, default."""
    keys = [f"{component}_{task_type}", component] if component else []
    keys += [task_type, "default"]
    return list(dict.fromkeys(keys))


def _text(value: Any, name: str) -> str | None:
    """A request-time routing field: None/"" = not set; anything but a string is the caller's error."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError(f"{name} must be a string, got {type(value).__name__}", param=name)
    return value.strip() or None


def _target(spec: TargetSpec, defaults: Mapping[str, str], deployments: Mapping[str, str]) -> Target:
    model = resolve_model(spec.provider, spec.model, defaults)
    kind = deployments.get(spec.provider)
    if kind is not None:
        return Target(kind, model, spec.timeout_s, spec.retries, deployment=spec.provider)
    return Target(spec.provider, model, spec.timeout_s, spec.retries)


def _named(name: str, deployments: Mapping[str, str]) -> str:
    """canonical(name), with the deployments listed among the valid names when it is neither."""
    try:
        return canonical(name)
    except UnknownProviderError:
        if not deployments:
            raise
        raise UnknownProviderError(name, [*deployments, *REGISTRY]) from None


def _override(provider: str | None, model: str | None, base: Target, defaults: Mapping[str, str],
              deployments: Mapping[str, str], listed: Mapping[str, str]) -> Target:
    """provider+model as given; provider alone = its default model; model alone = the provider that serves
    it (`provider/model`, `deployment/model`, a model a deployment lists, or a recognisable bare name:
    rhetor.routing.names), else base's provider."""
    if provider is None and model is not None:
        head, sep, tail = model.partition("/")
        if deployments and sep and tail and head in deployments:
            provider, model = head, tail
        elif model in listed:
            provider = listed[model]
        else:
            provider, model = split_model(model)
            if provider is None and deployments and sep and tail and head:
                _named(head, deployments)  # an unknown deployment: 400 listing the valid ones
            provider = provider or provider_for_model(model)
    if provider is not None:
        kind = deployments.get(provider)
        if kind is not None:
            return Target(kind, model or resolve_model(provider, None, defaults), deployment=provider)
        name = _named(provider, deployments)  # raises UnknownProviderError listing the valid ones
        return Target(name, model or resolve_model(name, None, defaults))
    assert model is not None
    return Target(base.provider, model, deployment=base.deployment)


def merged_options(entry: Mapping[str, Any], request: Mapping[str, Any]) -> dict[str, Any]:
    """R1 semantics: the request's options merged top-level over the entry's; null means "not set"; the routing
    keys are the router's, never sampling options."""
    merged = dict(entry)
    merged.update({k: v for k, v in request.items() if v is not None and k not in ROUTING_OPTION_KEYS})
    return merged


def route(
    config: TaskConfig,
    *,
    defaults: Mapping[str, str],
    task_type: str | None = None,
    component: str | None = None,
    context_id: str | None = None,
    provider_id: str | None = None,
    model_id: str | None = None,
    options: Mapping[str, Any] | None = None,
    deployments: Mapping[str, str] | None = None,
    listed: Mapping[str, str] | None = None,
) -> Route:
    """Resolve one request to its Route; a bad override raises UnknownProviderError / InvalidRequestError."""
    comp = component_of(component, context_id)
    task = (task_type or "").strip().lower() or "default"
    key = next(k for k in lookup_keys(comp, task) if k in config)  # "default" always exists
    entry = config[key]
    request_opts = dict(options or {})

    merged = merged_options(entry.options.sampling(), request_opts)

    deps, lst = deployments or {}, listed or {}
    configured = [_target(spec, defaults, deps) for spec in entry.chain()]
    primary, rest = configured[0], configured[1:]

    ov_provider = _text(provider_id, "provider_id") or _text(request_opts.get("provider"), "options.provider")
    ov_model = _text(model_id, "model_id") or _text(request_opts.get("model"), "options.model")
    if ov_provider is not None or ov_model is not None:
        primary = _override(ov_provider, ov_model, primary, defaults, deps, lst)

    chain = [primary]
    fb_provider = _text(request_opts.get("fallback_provider"), "options.fallback_provider")
    fb_model = _text(request_opts.get("fallback_model"), "options.fallback_model")
    if fb_provider is not None or fb_model is not None:
        chain.append(_override(fb_provider, fb_model, primary, defaults, deps, lst))
    chain += rest

    unique: dict[tuple[str, str], Target] = {}
    for target in chain:
        unique.setdefault(target.key, target)
    targets = list(unique.values())
    if entry.simulated_fallback and all(t.provider != SIMULATED for t in targets):
        targets.append(Target(SIMULATED, resolve_model(SIMULATED, None, defaults)))

    return Route(key=key, component=comp, task_type=task, targets=tuple(targets), options=merged,
                 strategy=entry.balance)


__all__ = ["Route", "Target", "component_of", "lookup_keys", "merged_options", "route"]
