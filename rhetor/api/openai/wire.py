"""Wire models of the OpenAI Responses API (POST /v1/responses) and its input items, translated to and from
Rhetor's normalized types.

Never silent: every body field is modelled; one Rhetor cannot honour is refused with a 400 naming it (unknown
fields too, `extra="forbid"`). Input items are normalized to their canonical stored shape (each with an id, as
`input_items` lists them) before they become `Message`s. Knows the normalized types; nothing of the gateway,
the context store or HTTP.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rhetor.errors import InvalidRequestError
from rhetor.types import Message, ToolCall, ToolChoice, ToolSpec

Item = dict[str, Any]
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FunctionTool(_Model):
    type: Literal["function"]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(_Model):
    type: Literal["function"]
    name: str


class TextFormat(_Model):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Model):
    format: TextFormat | None = None
    verbosity: Literal["medium"] | None = None  # the only level every provider gives; others are refused


class StreamOptions(_Model):
    include_obfuscation: bool | None = None  # Rhetor never pads deltas, so either value is honoured


class CreateBody(_Model):
    model: Annotated[str, Field(min_length=1)]
    input: str | list[dict[str, Any]] = ""
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_output_tokens: Annotated[int, Field(gt=0)] | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    text: TextConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    # Modelled only so a client sending them empty is served; any real value is refused (`refuse_unsupported`).
    background: bool | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None
    service_tier: str | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None
    prompt_cache_key: str | None = None


def refuse_unsupported(body: CreateBody) -> None:
    """A 400 naming the first field whose value Rhetor's Responses front cannot honour."""
    unsupported: list[tuple[str, bool]] = [
        ("background", bool(body.background)),
        ("reasoning", bool(body.reasoning) and any(v is not None for v in (body.reasoning or {}).values())),
        ("include", bool(body.include)),
        ("service_tier", body.service_tier not in (None, "auto", "default")),
        ("top_logprobs", bool(body.top_logprobs)),
        ("max_tool_calls", body.max_tool_calls is not None),
        ("prompt_cache_key", body.prompt_cache_key is not None),
    ]
    for name, bad in unsupported:
        if bad:
            raise InvalidRequestError(f"{name} is not supported by Rhetor's Responses API; leave it unset",
                                      param=name)


def tools_of(body: CreateBody) -> tuple[list[ToolSpec], list[dict[str, Any]]]:
    """(normalized tools, their echo for the response object). Only function tools are served."""
    specs: list[ToolSpec] = []
    echo: list[dict[str, Any]] = []
    for i, raw in enumerate(body.tools or []):
        if raw.get("type") != "function":
            raise InvalidRequestError(f"tools[{i}].type {raw.get('type')!r} is not supported by Rhetor's Responses "
                                      "API; only function tools are", param=f"tools[{i}].type")
        tool = FunctionTool.model_validate(raw)
        params = tool.parameters or {"type": "object", "properties": {}}
        specs.append(ToolSpec(tool.name, tool.description or "", params))
        echo.append({"type": "function", "name": tool.name, "description": tool.description, "parameters": params,
                     "strict": True if tool.strict is None else tool.strict})
    return specs, echo


def tool_choice_of(body: CreateBody) -> ToolChoice | None:
    choice, parallel = body.tool_choice, body.parallel_tool_calls
    if isinstance(choice, NamedFunction):
        return ToolChoice("tool", choice.name, parallel)
    if choice is None and parallel is None:
        return None
    return ToolChoice(choice or "auto", None, parallel)


def response_format_of(body: CreateBody) -> dict[str, Any] | None:
    """text.format in the chat shape the providers take (json_schema keeps its name, schema and strict flag)."""
    fmt = body.text.format if body.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.schema_ is None or not fmt.name:
        raise InvalidRequestError("text.format of type json_schema needs a name and a schema", param="text.format")
    schema: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema_, "strict": bool(fmt.strict)}
    if fmt.description:
        schema["description"] = fmt.description
    return {"type": "json_schema", "json_schema": schema}


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of parts", param=f"{where}.content")
    out: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise InvalidRequestError(f"{where}.content[{j}].type {kind!r} is not supported by Rhetor's "
                                      "Responses API (text parts only)", param=f"{where}.content[{j}].type")
        value = part.get("refusal" if kind == "refusal" else "text")
        if not isinstance(value, str):
            raise InvalidRequestError(f"{where}.content[{j}].text must be a string", param=f"{where}.content[{j}]")
        out.append(value)
    return "".join(out)


def message_item(role: str, text: str, item_id: str | None = None) -> Item:
    """A message item in its canonical (stored, listed) shape."""
    if role == "assistant":
        return {"id": item_id or new_item_id("msg"), "type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
    return {"id": item_id or new_item_id("msg"), "type": "message", "role": role, "status": "completed",
            "content": [{"type": "input_text", "text": text}]}


def call_item(call: ToolCall, item_id: str | None = None) -> Item:
    return {"id": item_id or new_item_id("fc"), "type": "function_call", "status": "completed",
            "call_id": call.id, "name": call.name, "arguments": call.arguments}


def canonical_items(raw: str | list[dict[str, Any]]) -> list[Item]:
    """The request's `input` as canonical items; a 400 naming `input[i]` for anything Rhetor cannot carry."""
    if isinstance(raw, str):
        return [message_item("user", raw)] if raw else []
    items: list[Item] = []
    for i, it in enumerate(raw):
        where = f"input[{i}]"
        kind = it.get("type", "message")
        if kind == "message":
            role = it.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise InvalidRequestError(f"{where}.role must be user, assistant, system or developer, got {role!r}",
                                          param=f"{where}.role")
            items.append(message_item(role, _text(it.get("content"), where), it.get("id")))
        elif kind == "function_call":
            call_id, name = it.get("call_id"), it.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise InvalidRequestError(f"{where}: a function_call needs call_id and name", param=where)
            args = it.get("arguments", "{}")
            items.append(call_item(ToolCall(call_id, name, args if isinstance(args, str) else "{}"), it.get("id")))
        elif kind == "function_call_output":
            call_id = it.get("call_id")
            if not isinstance(call_id, str):
                raise InvalidRequestError(f"{where}.call_id is required for a function_call_output",
                                          param=f"{where}.call_id")
            output = it.get("output")
            text = output if isinstance(output, str) else _text(output, where + ".output")
            items.append({"id": it.get("id") or new_item_id("fco"), "type": "function_call_output",
                          "status": "completed", "call_id": call_id, "output": text})
        else:
            raise InvalidRequestError(f"{where}.type {kind!r} is not supported by Rhetor's Responses API (message, "
                                      "function_call and function_call_output items are)", param=f"{where}.type")
    return items


def item_text(item: Item) -> str:
    """What a canonical item says, as plain text (for the context store and memory)."""
    kind = item["type"]
    if kind == "message":
        return "".join(p.get("text", "") for p in item["content"])
    if kind == "function_call":
        return f"[function_call {item['name']}({item['arguments']})]"
    return str(item.get("output", ""))


def to_messages(items: list[Item]) -> tuple[list[Message], list[str]]:
    """(conversation, system texts from system/developer messages) from canonical items."""
    out: list[Message] = []
    systems: list[str] = []
    names: dict[str, str] = {}
    for item in items:
        kind = item["type"]
        if kind == "message":
            role = item["role"]
            if role in ("system", "developer"):
                systems.append(item_text(item))
            else:
                out.append(Message("assistant" if role == "assistant" else "user", item_text(item)))
        elif kind == "function_call":
            call = ToolCall(item["call_id"], item["name"], item["arguments"])
            names[call.id] = call.name
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                out.append(Message("assistant", "", tool_calls=[call]))
        else:
            out.append(Message("tool", item["output"], tool_call_id=item["call_id"], name=names.get(item["call_id"])))
    return out, systems


__all__ = ["CreateBody", "Item", "call_item", "canonical_items", "item_text", "message_item", "new_item_id",
           "refuse_unsupported", "response_format_of", "to_messages", "tool_choice_of", "tools_of"]
