"""The routes against the model catalogue: a tasks.json naming a retired model is refused at start and by
`check-config`, with the key path and the successor; a deprecated one is allowed and reported. At request time
`admit` refuses a retired model with a 400 naming its successor — except for Tekton's legacy adapter callers,
which hard-code retired names (Terma sends claude-3-sonnet-20240229) and must be served unchanged: their
request runs on the successor, and the reply's `model` says so.

Pure: reads a validated TaskConfig or Route and a loaded Catalog, no I/O. Knows provider names, never classes.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from rhetor.catalog import Catalog
from rhetor.errors import ConfigError
from rhetor.routing.config import TaskConfig
from rhetor.routing.router import Route, Target

log = logging.getLogger("rhetor.catalog")
_upgraded: set[tuple[str, str]] = set()  # retired names already logged as upgraded (one line per model)


def admit(rt: Route, catalog: Catalog, *, upgrade_retired: bool = False) -> Route:
    """`rt` if every target may run: RetiredModelError (400, naming the successor) for a retired one, or with
    `upgrade_retired` that target replaced by its successor; a deprecated one logs one warning per model."""
    targets: list[Target] | None = None
    for i, t in enumerate(rt.targets):
        entry = catalog.entry(t.provider, t.model)
        if entry is None or entry.status == "current":
            continue
        if entry.status == "retired" and upgrade_retired and entry.successor:
            if (t.provider, t.model) not in _upgraded:
                _upgraded.add((t.provider, t.model))
                log.warning("model %s/%s is retired: a legacy caller's request runs on %s/%s", t.provider, t.model,
                            t.provider, entry.successor)
            targets = list(rt.targets) if targets is None else targets
            targets[i] = replace(t, model=entry.successor)
            continue
        catalog.admit(t.provider, t.model)  # raises for retired, logs deprecated once
    if targets is None:
        return rt
    unique: dict[tuple[str, str], Target] = {}
    for t in targets:
        unique.setdefault((t.provider, t.model), t)
    return replace(rt, targets=tuple(unique.values()))


def check_routes(config: TaskConfig, catalog: Catalog, source: str = "tasks.json") -> list[str]:
    """Raise ConfigError naming every retired model a route names; return one line per deprecated one."""
    retired: list[str] = []
    deprecated: list[str] = []
    for key in config.keys():
        entry = config[key]
        named: list[tuple[str, str, str | None]] = []  # (key path, provider, model)
        if entry.targets is not None:
            named += [(f"{key}.targets[{i}].model", t.provider, t.model) for i, t in enumerate(entry.targets)]
        else:
            assert entry.provider is not None
            named.append((f"{key}.model", entry.provider, entry.model))
        fb = entry.options
        if fb.fallback_model is not None:
            named.append((f"{key}.options.fallback_model", fb.fallback_provider or named[0][1], fb.fallback_model))
        for path, provider, model in named:
            info = catalog.entry(provider, model) if model else None
            if info is None or info.status == "current":
                continue
            if info.status == "retired":
                retired.append(f"{path}: {provider}/{model} is retired; use {provider}/{info.successor}")
            else:
                deprecated.append(f"{path}: {provider}/{model} is deprecated (shutdown {info.shutdown}); "
                                  f"move to {provider}/{info.successor}")
    if retired:
        raise ConfigError(f"{source}: " + "; ".join(retired))
    return deprecated


__all__ = ["admit", "check_routes"]
