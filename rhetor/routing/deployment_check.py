"""The routes against the providers file, at start and in `check-config`: a route naming a deployment's
retired model, or a deployment listing a retired model that a route sends traffic to, is refused with both
key paths and the successor. (rhetor.routing.lifecycle does the same for provider-level names.)

Pure: reads a validated TaskConfig, the deployments and the catalogue. Knows deployment names and kinds,
never provider classes or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping

from rhetor.catalog import Catalog
from rhetor.errors import ConfigError
from rhetor.providers.deployments import DeploymentSpec
from rhetor.routing.config import TaskConfig


def _routed(config: TaskConfig) -> list[tuple[str, str, str]]:
    """(key path, provider or deployment, model) for every model a route names explicitly."""
    out: list[tuple[str, str, str]] = []
    for key in config.keys():
        entry = config[key]
        if entry.targets is not None:
            out += [(f"{key}.targets[{i}].model", t.provider, t.model) for i, t in enumerate(entry.targets) if t.model]
        elif entry.provider is not None and entry.model:
            out.append((f"{key}.model", entry.provider, entry.model))
        fb = entry.options
        if fb.fallback_model is not None:
            out.append((f"{key}.options.fallback_model", fb.fallback_provider or out[-1][1] if out else "",
                        fb.fallback_model))
    return out


def check_deployments(config: TaskConfig, deployments: Mapping[str, DeploymentSpec], catalog: Catalog,
                      source: str = "tasks.json") -> None:
    if not deployments:
        return
    problems: list[str] = []
    routed = _routed(config)
    for path, name, model in routed:
        spec = deployments.get(name)
        info = catalog.entry(spec.kind, model) if spec is not None else None
        if spec is not None and info is not None and info.status == "retired":
            problems.append(f"{source}: {path}: {name}/{model} is retired; use {name}/{info.successor}")
    for spec in deployments.values():
        for j, model in enumerate(spec.models or ()):
            info = catalog.entry(spec.kind, model)
            if info is None or info.status != "retired":
                continue
            users = [path for path, name, m in routed if m == model and name in (spec.name, spec.kind)]
            if users:
                problems.append(f"{spec.path}.models[{j}]: {spec.kind}/{model} is retired (use {info.successor}) "
                                f"and routed by {source} {', '.join(users)}")
    if problems:
        raise ConfigError("; ".join(problems))


__all__ = ["check_deployments"]
