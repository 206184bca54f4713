"""Model assignments per component and capability, read from the routing config: the body of
`GET /api/models/assignments`, which Tekton's 2025 rhetor_client reads before each call (contracts §8).

The client reads `components.<component>.assignments.<capability>` (a model id, or "use_default"), else
`defaults.<capability>`, and sends that id back as `model`. Every value here is the primary target the router
would pick for that pair, so sending it back changes nothing but naming the model: a bare id when the router
maps that name to the right provider (rhetor.routing.names), else `provider/model`. A pure function of the
config: no I/O, and it knows nothing of HTTP or of which providers are available right now.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from rhetor.routing.config import TaskConfig
from rhetor.routing.names import provider_for_model
from rhetor.routing.router import route

CAPABILITIES: Final = ("code", "planning", "reasoning", "chat")
USE_DEFAULT: Final = "use_default"


def config_components(config: TaskConfig) -> list[str]:
    """The components named by tasks.json keys: `<comp>` and the `<comp>` of `<comp>_<task>`."""
    tasks = {*CAPABILITIES, "default"}
    out: set[str] = set()
    for key in config.keys():
        head, sep, tail = key.rpartition("_")
        if sep and tail in tasks and head:
            out.add(head)
        elif key not in tasks:
            out.add(key)
    return sorted(out)


def _model_id(provider: str, model: str) -> str:
    """The id to send back: bare when the name alone leads to `provider`, else `provider/model`."""
    return model if provider_for_model(model) == provider else f"{provider}/{model}"


def _target(config: TaskConfig, defaults: Mapping[str, str], component: str | None, capability: str) -> dict[str, Any]:
    rt = route(config, defaults=defaults, component=component, task_type=capability)
    first = rt.targets[0]
    return {"provider": first.provider, "model": first.model, "id": _model_id(first.provider, first.model),
            "key": rt.key,
            "fallbacks": [f"{t.provider}/{t.model}" for t in rt.targets[1:]]}


def assignments(config: TaskConfig, defaults: Mapping[str, str], components: Iterable[str]) -> dict[str, Any]:
    """`{defaults: {cap: model}, default_targets: {cap: target}, capabilities, components: {comp:
    {assignments: {cap: model | "use_default"}, targets: {cap: target}}}}`; a target is
    `{provider, model, id, key, fallbacks}` (`id`: what to send back as `model`), and "use_default" means
    the component has no entry of its own."""
    base = {cap: _target(config, defaults, None, cap) for cap in CAPABILITIES}
    comps: dict[str, Any] = {}
    for comp in sorted({c.strip().lower() for c in components if c.strip()}):
        targets = {cap: _target(config, defaults, comp, cap) for cap in CAPABILITIES}
        comps[comp] = {
            "assignments": {cap: USE_DEFAULT if t["key"] == base[cap]["key"] else t["id"]
                            for cap, t in targets.items()},
            "targets": targets,
        }
    return {"defaults": {cap: t["id"] for cap, t in base.items()}, "default_targets": base,
            "capabilities": list(CAPABILITIES), "components": comps}


__all__ = ["CAPABILITIES", "USE_DEFAULT", "assignments", "config_components"]
