"""What the simulated provider does with tools and JSON response formats: deterministic stand-ins, so the
tool-calling and structured-output paths of every front can be exercised with no key and no network.

Rules: with tools offered (and tool_choice not "none"), if the last turn is a tool result the reply is text
that quotes it; otherwise a call is made when tool_choice is "required" or names a tool, or when the last
user message mentions a tool by name. The call's arguments fill the schema's required properties with
placeholder values of their type (first enum value; strings "simulated"). A JSON response_format wraps the
text reply as `{"response": text}`. Pure functions; knows nothing of providers' wires, routing or HTTP.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from rhetor.types import ChatRequest, ToolCall, ToolSpec

_PLACEHOLDERS: dict[str, Any] = {"string": "simulated", "integer": 0, "number": 0, "boolean": False,
                                 "array": [], "object": {}, "null": None}


def _placeholder(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "simulated"
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        return arguments_for(schema)
    return _PLACEHOLDERS.get(str(kind), "simulated")


def arguments_for(schema: dict[str, Any]) -> dict[str, Any]:
    """Placeholder values for the required properties of a JSON Schema object."""
    raw_props, raw_required = schema.get("properties"), schema.get("required")
    props: dict[str, Any] = raw_props if isinstance(raw_props, dict) else {}
    required: list[Any] = raw_required if isinstance(raw_required, list) else []
    return {name: _placeholder(props.get(name)) for name in required if isinstance(name, str)}


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
    """The reply text in the requested format: JSON response formats get `{"response": text}`."""
    kind = (request.response_format or {}).get("type")
    if kind in ("json_object", "json_schema"):
        return orjson.dumps({"response": text}).decode()
    return text


__all__ = ["arguments_for", "shape_text", "tool_call", "tool_result_text"]
