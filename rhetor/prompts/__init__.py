"""Per-component system prompts (simple built-ins; templates come later) and the rule that combines them
with a caller's own system prompt. Data lives in components.json; this module only loads and renders it.

Rule: the component's prompt comes first, the caller's system prompt follows after a blank line; with no
component only the caller's prompt is used. The legacy adapter's contexts (`awt-team`, `agora`, `default`)
and components without a prompt get "You are {Name}, a Tekton AI component."
Knows nothing of providers, routing or HTTP.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

_ADAPTER = {
    "awt-team": "You are the AWT team assistant in Tekton, helping a team of agents coordinate their work.",
    "agora": "You are Agora, the Tekton forum where AI components discuss and reach decisions together.",
    "default": "You are a helpful assistant in Tekton, a multi-AI engineering platform.",
}


@cache
def _components() -> dict[str, dict[str, Any]]:
    text = resources.files("rhetor.prompts").joinpath("components.json").read_text("utf-8")
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


def render(spec: dict[str, Any]) -> str:
    caps = "\n".join(f"- {c}" for c in spec["capabilities"])
    return (
        f"# {spec['name']} - Tekton AI Component\n\n"
        f"## Role\nYou are {spec['name']}, {spec['role']}.\n\n"
        f"## Capabilities\n{caps}\n\n"
        f"## Communication Style\n- Tone: {spec['tone']}\n- Focus: {spec['focus']}\n"
        f"- Style: {spec['style']}\n- Personality: {spec['personality']}\n\n"
        "## Collaboration\nYou work alongside the other Tekton components; say which of them is better "
        "placed to help when a request falls outside your role."
    )


def component_prompt(component: str | None) -> str | None:
    if not component:
        return None
    key = component.lower()
    spec = _components().get(key)
    if spec is not None:
        return render(spec)
    return _ADAPTER.get(key) or f"You are {component.capitalize()}, a Tekton AI component."


def system_prompt_for(component: str | None, caller_system: str | None) -> str | None:
    parts = [p for p in (component_prompt(component), caller_system) if p]
    return "\n\n".join(parts) if parts else None


__all__ = ["component_prompt", "system_prompt_for"]
