"""The Responses API's `response` object: its echo of the request, its output items and its usage, built from
Rhetor's normalized reply. One builder for the JSON answer, the stream's lifecycle events and GET.
Knows the normalized types and the request wire model; nothing of the gateway, the store or HTTP.
"""

from __future__ import annotations

import time
from typing import Any

from rhetor.api.openai.wire import CreateBody, Item, call_item, message_item, new_item_id
from rhetor.types import FinishReason, ToolCall, Usage

_INCOMPLETE: dict[FinishReason, str] = {"length": "max_output_tokens", "content_filter": "content_filter"}


class ResponseShell:
    """Everything of a response object except its status, output and usage, fixed when the request arrives."""

    def __init__(self, body: CreateBody, response_id: str, tools_echo: list[dict[str, Any]]) -> None:
        self.id = response_id
        self.created_at = int(time.time())
        self.model = body.model
        choice = body.tool_choice
        fmt = body.text.format if body.text is not None else None
        self.echo: dict[str, Any] = {
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "metadata": body.metadata or {}, "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": body.previous_response_id, "temperature": body.temperature,
            "top_p": body.top_p, "tools": tools_echo,
            "tool_choice": choice.model_dump() if choice is not None and not isinstance(choice, str) else
            (choice or "auto"),
            "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True) if fmt else {"type": "text"}},
            "truncation": body.truncation or "disabled", "user": body.user or body.safety_identifier,
            "store": body.store is not False, "background": False, "reasoning": None, "service_tier": "default",
        }

    def build(self, status: str, output: list[Item], usage: Usage | None = None, *, model: str | None = None,
              finish: FinishReason | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
        incomplete = _INCOMPLETE.get(finish) if finish is not None else None
        if incomplete is not None and status == "completed":
            status = "incomplete"
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "completed_at": int(time.time()) if status in ("completed", "incomplete") else None,
                "error": error, "incomplete_details": {"reason": incomplete} if status == "incomplete" else None,
                "model": model or self.model, "output": output,
                "usage": usage_object(usage) if usage is not None else None, **self.echo}


def usage_object(u: Usage) -> dict[str, Any]:
    return {"input_tokens": u.input_tokens,
            "input_tokens_details": {"cached_tokens": u.cached_input_tokens,
                                     "cache_write_tokens": u.cache_write_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.total_tokens}


def output_items(text: str, calls: list[ToolCall]) -> list[Item]:
    """A reply's output: its text as one assistant message (when it has text or no calls), then its calls."""
    items: list[Item] = []
    if text or not calls:
        items.append(message_item("assistant", text, new_item_id("msg")))
    items.extend(call_item(c) for c in calls)
    return items


__all__ = ["ResponseShell", "output_items", "usage_object"]
