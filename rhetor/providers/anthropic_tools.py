"""Messages-API turns with tool use, for the Anthropic provider: normalized messages to strictly alternating
user/assistant turns (text, `tool_use` and `tool_result` blocks), tools and tool_choice to their wire form,
and `tool_use` blocks back to `ToolCall`s.

Pure functions, no I/O; Anthropic dicts never leave the Anthropic provider's modules. Knows nothing of
routing, contexts or Rhetor's fronts.
"""

from __future__ import annotations

from typing import Any

import orjson

from rhetor.errors import InvalidRequestError
from rhetor.types import ChatRequest, Image, Message, ToolCall, ToolChoice, ToolSpec

# A user turn put in front when a conversation starts with the assistant: Anthropic requires the first
# message to be the user's and rejects empty text blocks.
LEADING_USER_PLACEHOLDER = "(conversation continues)"


def _arguments(call: ToolCall) -> dict[str, Any]:
    """A tool call's JSON arguments as the object Anthropic's `input` wants."""
    try:
        value = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"tool call {call.id!r} has arguments that are not JSON", param="messages") from None
    return value if isinstance(value, dict) else {"value": value}


def _blocks(m: Message) -> list[dict[str, Any]]:
    if m.role == "tool":
        block: dict[str, Any] = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content}
        if m.is_error:
            block["is_error"] = True
        return [block]
    blocks: list[dict[str, Any]] = [_image(image) for image in m.images or []]  # images first, as Anthropic advises
    blocks += [{"type": "text", "text": m.content}] if m.content else []
    for call in m.tool_calls or []:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _arguments(call)})
    return blocks


def _image(image: Image) -> dict[str, Any]:
    if image.url is not None:
        return {"type": "image", "source": {"type": "url", "url": image.url}}
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type or "image/png",
                                        "data": image.data}}


def merge_messages(request: ChatRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """Strictly alternating user/assistant turns starting with user; inline system messages are lifted out.

    Plain text turns stay strings (same-role neighbours joined by a blank line); a turn with tool use or
    tool results becomes a block list, tool results first as Anthropic requires.
    """
    turns: list[dict[str, Any]] = []
    systems: list[str] = []
    for m in request.messages:
        if m.role == "system":
            if m.content:
                systems.append(m.content)
            continue
        role = "user" if m.role == "tool" else m.role
        plain = m.role != "tool" and not m.tool_calls and not m.images
        if plain and not m.content:
            continue  # Anthropic rejects empty text blocks
        if turns and turns[-1]["role"] == role:
            last = turns[-1]
            if plain and isinstance(last["content"], str):
                last["content"] += "\n\n" + m.content
                continue
            if isinstance(last["content"], str):
                last["content"] = [{"type": "text", "text": last["content"]}]
            last["content"].extend(_blocks(m))
        else:
            turns.append({"role": role, "content": m.content if plain else _blocks(m)})
    if not turns:
        raise InvalidRequestError("the conversation has no non-empty user or assistant message", param="messages")
    if turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": LEADING_USER_PLACEHOLDER})
    return turns, systems


def tools_payload(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for t in tools:
        tool: dict[str, Any] = {"name": t.name, "input_schema": t.parameters}
        if t.description:
            tool["description"] = t.description
        out.append(tool)
    return out


def tool_choice_payload(choice: ToolChoice) -> dict[str, Any]:
    kind = {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}[choice.mode]
    out: dict[str, Any] = {"type": kind}
    if choice.mode == "tool":
        out["name"] = choice.name
    if choice.parallel is False and choice.mode != "none":
        out["disable_parallel_tool_use"] = True
    return out


def add_request_knobs(payload: dict[str, Any], request: ChatRequest) -> None:
    """Tools, tool_choice, the caller's `user` (as metadata.user_id) and a json_schema response_format (as
    output_config.format, Anthropic's structured outputs). Anthropic has no seed and no plain JSON mode."""
    if request.tools:
        payload["tools"] = tools_payload(request.tools)
        if request.tool_choice is not None:
            payload["tool_choice"] = tool_choice_payload(request.tool_choice)
    if request.user is not None and "metadata" not in payload:
        payload["metadata"] = {"user_id": request.user}
    fmt = request.response_format or {}
    schema = fmt.get("json_schema", {}).get("schema") if isinstance(fmt.get("json_schema"), dict) else None
    if fmt.get("type") == "json_schema" and isinstance(schema, dict):
        payload["output_config"] = {"format": {"type": "json_schema", "schema": schema}}


def parse_tool_uses(blocks: list[Any]) -> list[ToolCall]:
    return [ToolCall(str(b.get("id") or f"toolu_{i}"), str(b.get("name") or ""),
                     orjson.dumps(b.get("input") if isinstance(b.get("input"), dict) else {}).decode())
            for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("type") == "tool_use"]


__all__ = ["LEADING_USER_PLACEHOLDER", "add_request_knobs", "merge_messages", "parse_tool_uses",
           "tool_choice_payload", "tools_payload"]
