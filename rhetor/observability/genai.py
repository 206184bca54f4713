"""OpenTelemetry GenAI semantic-convention attributes from Rhetor's normalized types: what was asked
(`gen_ai.request.*`), what answered (`gen_ai.response.*`, `gen_ai.usage.*`), and — only when content capture is
on — the messages themselves (`gen_ai.input.messages`, `gen_ai.output.messages`, `gen_ai.system_instructions`,
as JSON text). Pure functions: callers only reach them with a span in hand (tracing on).
Knows the normalized types; nothing of HTTP, providers' wire formats or the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from rhetor.observability.tracing import GENAI_SYSTEM
from rhetor.types import ChatResponse, Message, StreamEnd, Usage

_REQUEST_KNOBS = {"temperature": "gen_ai.request.temperature", "max_tokens": "gen_ai.request.max_tokens",
                  "top_p": "gen_ai.request.top_p", "seed": "gen_ai.request.seed"}


def system_attrs(provider: str) -> dict[str, Any]:
    name = GENAI_SYSTEM.get(provider, provider)
    return {"gen_ai.system": name, "gen_ai.provider.name": name}


def target_attrs(provider: str, model: str) -> dict[str, Any]:
    """One attempt's CLIENT span: who is asked, for which model."""
    return {"gen_ai.operation.name": "chat", **system_attrs(provider), "gen_ai.request.model": model}


def request_attrs(options: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling knobs a request set (already typed by rhetor.routing.options)."""
    out: dict[str, Any] = {attr: options[key] for key, attr in _REQUEST_KNOBS.items()
                           if isinstance(options.get(key), int | float) and not isinstance(options.get(key), bool)}
    stop = options.get("stop")
    if isinstance(stop, list) and stop:
        out["gen_ai.request.stop_sequences"] = [str(s) for s in stop]
    return out


def usage_attrs(usage: Usage) -> dict[str, Any]:
    out = {"gen_ai.usage.input_tokens": usage.input_tokens, "gen_ai.usage.output_tokens": usage.output_tokens}
    if usage.cached_input_tokens:
        out["gen_ai.usage.cache_read.input_tokens"] = usage.cached_input_tokens
    if usage.cache_write_tokens:
        out["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        out["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    return out


def response_attrs(response: ChatResponse | StreamEnd, provider: str | None = None,
                   model: str | None = None) -> dict[str, Any]:
    """What answered: the model it reports (else the target's), why it stopped, the tokens."""
    out: dict[str, Any] = {"gen_ai.response.model": response.model or model,
                           "gen_ai.response.finish_reasons": [response.finish_reason],
                           **usage_attrs(response.usage)}
    if provider is not None:
        out.update(system_attrs(provider))
    return {k: v for k, v in out.items() if v is not None}


def input_content(system: str | None, messages: Sequence[Message]) -> dict[str, str]:
    """The prompt, in the conventions' JSON shape (capture on only)."""
    out = {"gen_ai.input.messages": orjson.dumps([_message(m) for m in messages]).decode()}
    if system:
        out["gen_ai.system_instructions"] = orjson.dumps([{"type": "text", "content": system}]).decode()
    return out


def output_content(text: str, finish_reason: str) -> dict[str, str]:
    """The completion, in the conventions' JSON shape (capture on only)."""
    msg = {"role": "assistant", "parts": [{"type": "text", "content": text}], "finish_reason": finish_reason}
    return {"gen_ai.output.messages": orjson.dumps([msg]).decode()}


def _message(m: Message) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "content": m.content}] if m.content else []
    for call in m.tool_calls or ():
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    if m.role == "tool":
        parts = [{"type": "tool_call_response", "id": m.tool_call_id, "response": m.content}]
    return {"role": m.role, "parts": parts}


__all__ = ["input_content", "output_content", "request_attrs", "response_attrs", "system_attrs", "target_attrs",
           "usage_attrs"]
