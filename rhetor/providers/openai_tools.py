"""Tool calling and the rarer request knobs on the Chat Completions wire, for the OpenAI provider.

Pure functions, no I/O: normalized messages (with tool calls and tool results), `ToolSpec`s and `ToolChoice`
to Chat Completions dicts, and `tool_calls` (whole, or as stream deltas) back to `ToolCall` / `ToolCallDelta`.
OpenAI dicts never leave the OpenAI provider's modules. Knows nothing of routing, contexts or Rhetor's fronts.
"""

from __future__ import annotations

from typing import Any

from rhetor.providers.fidelity import budget_effort
from rhetor.types import ChatRequest, Message, ToolCall, ToolCallDelta, ToolChoice, ToolSpec


def message_dict(m: Message) -> dict[str, Any]:
    """One Chat Completions message: assistant turns carry `tool_calls`, tool turns their `tool_call_id`."""
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content}
    if m.role == "assistant" and m.tool_calls:
        return {"role": "assistant", "content": m.content or None,
                "tool_calls": [{"id": c.id, "type": "function",
                                "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]}
    if m.images:  # image inputs as content parts (a base64 image as a data URL)
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
        parts += [{"type": "image_url", "image_url": {"url": image.data_url}} for image in m.images]
        return {"role": m.role, "content": parts}
    return {"role": m.role, "content": m.content}


def tools_payload(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in tools:
        function: dict[str, Any] = {"name": t.name, "parameters": t.parameters}
        if t.description:
            function["description"] = t.description
        out.append({"type": "function", "function": function})
    return out


def tool_choice_payload(choice: ToolChoice) -> Any:
    if choice.mode == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return choice.mode


def add_request_knobs(payload: dict[str, Any], request: ChatRequest) -> None:
    """Tools, tool_choice, response_format, seed and user onto a Chat Completions body, when set."""
    if request.tools:
        payload["tools"] = tools_payload(request.tools)
        if request.tool_choice is not None:
            payload["tool_choice"] = tool_choice_payload(request.tool_choice)
            if request.tool_choice.parallel is not None:
                payload["parallel_tool_calls"] = request.tool_choice.parallel
    if request.response_format is not None:
        payload["response_format"] = request.response_format
    if request.seed is not None:
        payload["seed"] = request.seed
    if request.user is not None:
        payload["user"] = request.user
    if request.reasoning is not None:  # Anthropic's thinking budget as an effort (rhetor.providers.fidelity)
        r = request.reasoning
        payload["reasoning_effort"] = r.effort or budget_effort(r.budget_tokens or 0)
    if request.service_tier is not None:
        payload["service_tier"] = request.service_tier


def parse_tool_calls(raw: Any) -> list[ToolCall]:
    """`message.tool_calls` of a chat.completion; malformed entries are skipped."""
    calls: list[ToolCall] = []
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        calls.append(ToolCall(str(item.get("id") or f"call_{i}"), function["name"],
                              arguments if isinstance(arguments, str) else "{}"))
    return calls


def parse_tool_call_deltas(raw: Any) -> list[ToolCallDelta]:
    """`delta.tool_calls` of a chat.completion.chunk as normalized deltas."""
    deltas: list[ToolCallDelta] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        index = item.get("index")
        raw_function = item.get("function")
        function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
        name, arguments = function.get("name"), function.get("arguments")
        deltas.append(ToolCallDelta(index if isinstance(index, int) else 0,
                                    str(item["id"]) if item.get("id") else None,
                                    name if isinstance(name, str) and name else None,
                                    arguments if isinstance(arguments, str) else ""))
    return deltas


__all__ = ["add_request_knobs", "message_dict", "parse_tool_call_deltas", "parse_tool_calls", "tool_choice_payload",
           "tools_payload"]
