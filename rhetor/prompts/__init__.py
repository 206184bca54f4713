"""Prompts: sandboxed, versioned templates (built-in data files + user versions in RHETOR_DATA_DIR) and the
per-component system prompts built from them.

The system-prompt rule (also in README.md): the component's prompt (`system.<component>`, else
`system.generic`) comes first; then, if the request names a `template_id` whose metadata `use_as` is "system"
(the default), its rendered text; then the caller's `system_prompt`; then any system messages — joined by a
blank line. With no component, only the caller's parts are used. A `use_as: "user"` template's rendered text
is the request's new user message instead.
Knows nothing of providers, routing or HTTP.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from rhetor.errors import InvalidRequestError, TemplateConflictError, TemplateNotFoundError, TemplateRenderError
from rhetor.prompts.store import Rendered, TemplateStore
from rhetor.prompts.templates import Version
from rhetor.types import Message


@cache
def _builtin_store() -> TemplateStore:
    return TemplateStore(None)


def component_prompt(component: str | None) -> str | None:
    """The built-in prompt of a component (no user overrides: those need the running gateway's store)."""
    return _builtin_store().builtin_component_prompt(component)


def system_prompt_for(component: str | None, caller_system: str | None) -> str | None:
    """The rule above over the built-ins; the gateway calls its own store's `system_prompt` instead."""
    return _builtin_store().builtin_system_prompt(component, caller_system)


async def apply_template(store: TemplateStore, template_id: str, version: int | None, variables: dict[str, Any] | None,
                   message: str | None, messages: list[Message] | None,
                   ) -> tuple[str | None, list[Message] | None, str | None]:
    """A chat request's template: returns (message, messages, template system prompt) per the rule above."""
    rendered = await store.render_request(template_id, version, variables)
    if rendered.use_as == "user":
        if message is not None:
            raise InvalidRequestError(f"template {template_id!r} renders the user message (use_as: user); do not "
                                      "send 'message' as well", param="message")
        if messages is not None:
            return None, [*messages, Message("user", rendered.text)], None
        return rendered.text, None, None
    if message is None and messages is None:
        raise InvalidRequestError(f"template {template_id!r} renders a system prompt; give 'message' or 'messages' "
                                  "too", param="message")
    return message, messages, rendered.text


__all__ = ["Rendered", "TemplateConflictError", "TemplateNotFoundError", "TemplateRenderError", "TemplateStore",
           "Version", "apply_template", "component_prompt", "system_prompt_for"]
