"""What the simulated provider does with tools and JSON response formats: deterministic stand-ins, so the
tool-calling and structured-output paths of every front can be exercised with no key and no network.

Rules: with tools offered (and tool_choice not "none"), if the last turn is a tool result the reply is text
that quotes it; otherwise a call is made when tool_choice is "required" or names a tool, or when the last
user message mentions a tool by name. The call's arguments fill the schema's required properties with
values valid against their schemas (first enum value; strings "simulated"; rhetor.providers.simulated_schema).
A json_schema response_format answers a value valid against the schema; json_object wraps the text reply as
`{"response": text}`. Pure functions; knows nothing of providers' wires, routing or HTTP.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from rhetor.providers.simulated_schema import example
from rhetor.types import ChatRequest, ToolCall, ToolSpec


def arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Values for the required properties of a JSON Schema object, each valid against its property's schema
    (`$ref`, `anyOf`, bounds, formats: rhetor.providers.simulated_schema)."""
    raw_props, raw_required = schema.get("properties"), schema.get("required")
    props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
    required: list[Any] = raw_required if isinstance(raw_required, list) else []
    return {name: example(props.get(name, {}), schema) for name in required if isinstance(name, str)}


def _chosen(request: ChatRequest) -> ToolSpec | None:
    tools, choice = request.tools or [], request.tool_choice
    if not tools or (choice is not None and choice.mode == "none"):
        return None
    if request.messages and request.messages[-1].role == "tool":
        return None
    if choice is not None and choice.mode == "tool":
        return next((t for t in tools if t.name == choice.name), None)
    last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "").lower()
    mentioned = next((t for t in tools if t.name.lower() in last_user), None)
    if mentioned is not None:
        return mentioned
    return tools[0] if choice is not None and choice.mode == "required" else None


def tool_call(request: ChatRequest) -> ToolCall | None:
    """The one call the simulated model makes for `request`, or None to answer in text."""
    tool = _chosen(request)
    if tool is None:
        return None
    arguments = orjson.dumps(arguments_for(tool.parameters)).decode()
    seed = "|".join([tool.name, arguments, *(m.content for m in request.messages)])
    return ToolCall("call_sim_" + hashlib.blake2b(seed.encode(), digest_size=8).hexdigest(), tool.name, arguments)


def tool_result_text(request: ChatRequest) -> str | None:
    """The reply after a tool result: it quotes the result (first 200 characters)."""
    if not request.messages or request.messages[-1].role != "tool":
        return None
    result = request.messages[-1].content
    result = result[:200] + "..." if len(result) > 200 else result
    return (f'The tool returned: "{result}". This is a simulated response as no real LLM is available.')


def shape_text(request: ChatRequest, text: str) -> str:
    """The reply text in the requested format: a json_schema format gets a value valid against its schema (so
    structured output works with no key), json_object gets `{"response": text}`."""
    fmt = request.response_format or {}
    kind = fmt.get("type")
    spec = fmt.get("json_schema")
    if kind == "json_schema" and isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
        return orjson.dumps(example(spec["schema"])).decode()
    if kind in ("json_object", "json_schema"):
        return orjson.dumps({"response": text}).decode()
    return text


__all__ = ["arguments_for", "shape_text", "tool_call", "tool_result_text"]
