"""Routing decisions memoized: `RouteMemo.route` answers what `route()` + `pinned()` + `lifecycle.admit()` answer,
computed once per distinct routing input for one configuration, so a request reuses its route's targets instead of
rebuilding them (benchmarks/instructions.py `oa`: the three were ~80 Python calls and ~8% of the in-process
profile per request, all of it the same answer for the same model name).

A route depends only on the configuration (tasks.json, the providers' default models, deployments, the models they
list, the catalogue) and on the request's routing fields: task type, component (or the context id's prefix), the
provider/model ids, the routing keys of `options`, `pinned`, and whether a retired model is upgraded (legacy
fronts). The sampling options are the request's own, merged over the memoized entry's per request exactly as the
router merges them. The memo holds at most `size` routes (the oldest goes first) and is emptied whenever any piece
of configuration is another object than the one it was filled from (a reload swaps the gateway's objects:
rhetor.config.reload), compared by identity on every call. Errors (an unknown provider, a retired model) are never
memoized: they raise on every request. A caller key restricted to some providers/models (rhetor.governance.keys)
filters the memoized targets before the catalogue's admission, as the gateway always did.
Pure: no I/O; knows nothing of HTTP, fronts or providers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rhetor.catalog import Catalog
from rhetor.routing.config import ROUTING_OPTION_KEYS, TaskConfig
from rhetor.routing.lifecycle import admit
from rhetor.routing.models import pinned_options
from rhetor.routing.router import Route, Target, component_of, merged_options, route

_ROUTING = tuple(sorted(ROUTING_OPTION_KEYS))
SIZE = 1024  # distinct routing inputs kept: task types x components x model names a deployment sees


@dataclass(slots=True)
class _Known:
    base: Route  # the route with the entry's options only (the request's sampling is merged per request)
    targets: tuple[Target, ...]  # after `pinned`, before the catalogue's admission
    admitted: tuple[Target, ...] | None = None  # after the catalogue's admission, once a request without a key
    # restriction asked (a restricted key filters `targets` first: it may never reach a retired model)


class RouteMemo:
    """One gateway's routes by routing input, for the configuration objects it was last called with."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._basis: tuple[object, ...] = ()
        self._known: dict[tuple[Any, ...], _Known] = {}

    def route(self, config: TaskConfig, catalog: Catalog, defaults: Mapping[str, str],
              deployments: Mapping[str, str], listed: Mapping[str, str], task_type: str | None,
              component: str | None, context_id: str | None, provider_id: str | None, model_id: str | None,
              options: dict[str, Any], pinned: bool, upgrade_retired: bool,
              permitted: Callable[[Sequence[Target]], tuple[Target, ...]] | None = None) -> Route:
        """The request's admitted route (`permitted`: a restricted caller key's filter of the targets). The
        gateway passes every argument positionally (~0.5k instructions a keyword, callgrind: ChatRequest's 17
        keywords 12.9k, positionally 4.6k)."""
        basis = self._basis
        if len(basis) != 5 or basis[0] is not config or basis[1] is not catalog or basis[2] is not defaults \
                or basis[3] is not deployments or basis[4] is not listed:
            self._basis, self._known = (config, catalog, defaults, deployments, listed), {}
        comp = component_of(component, context_id) if component or context_id else None
        routing = () if ROUTING_OPTION_KEYS.isdisjoint(options) else tuple([options.get(k) for k in _ROUTING])
        key = (task_type, comp, provider_id, model_id, routing, pinned, upgrade_retired)
        try:
            known, hashable = self._known.get(key), True
        except TypeError:  # an unhashable routing value: the router's own error names it
            known, hashable = None, False
        if known is None:
            base = route(config, defaults=defaults, task_type=task_type, component=comp, provider_id=provider_id,
                         model_id=model_id, options={k: options[k] for k in _ROUTING if k in options},
                         deployments=deployments, listed=listed)
            known = _Known(base, base.targets[:1] if pinned else base.targets)
            if hashable:
                if len(self._known) >= self.size:
                    del self._known[next(iter(self._known))]
                self._known[key] = known
        base = known.base
        if pinned:  # the caller's own options only (rhetor.routing.models.pinned)
            opts = pinned_options(options) if options else {}
        else:
            opts = merged_options(base.options, options)
        if permitted is not None:
            return admit(_with(base, permitted(known.targets), opts), catalog, upgrade_retired=upgrade_retired)
        if known.admitted is None:  # raises for a retired model (never memoized): every request is refused
            known.admitted = admit(_with(base, known.targets, opts), catalog, upgrade_retired=upgrade_retired).targets
        return _with(base, known.admitted, opts)


def _with(base: Route, targets: tuple[Target, ...], options: dict[str, Any]) -> Route:
    # positionally, in Route's field order (six keywords: ~3k instructions a request, callgrind)
    return Route(base.key, base.component, base.task_type, targets, options, base.strategy)


__all__ = ["SIZE", "RouteMemo"]
