"""The Anthropic-compatible front: POST /v1/messages (JSON, or the Messages SSE event sequence) and
POST /v1/messages/count_tokens (an estimate, and it says so).

Any provider answers behind it (model names: rhetor.routing.models). Anthropic gets the caller's body as sent
(thinking, cache_control, image and document blocks, betas) and its answer is relayed as received (same-vendor
pass-through). For any other upstream, text, tool_use and tool_result blocks translate to the normalized types,
`thinking` to a reasoning effort, cache_control is not sent (documented), thinking blocks in the history are
omitted; image and document blocks are refused with a 400 naming the block (or dropped and listed in lenient
mode), as is any field that upstream cannot honour (rhetor.providers.fidelity, docs/fronts.md). Errors are
Anthropic's (rhetor.api.compat.errors). Knows the gateway, never providers.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.anthropic.errors import ANTHROPIC
from rhetor.api.anthropic.stream import STOP_REASONS, events, stop_reason
from rhetor.api.attribution import attribute
from rhetor.api.compat.common import (
    EncodedResponse,
    chat_input,
    new_id,
    read_body,
    resolve,
    rhetor_header_list,
    session_header_list,
    sse_response,
)
from rhetor.api.compat.errors import compat_endpoint
from rhetor.api.compat.fidelity import (
    anthropic_image,
    anthropic_usage,
    fidelity_header_list,
    passthrough,
)
from rhetor.api.responses import json_response, parse_json
from rhetor.api.state import gateway
from rhetor.errors import InvalidRequestError, ProviderError
from rhetor.gateway import ChatOutcome
from rhetor.providers.base import estimate_tokens
from rhetor.types import Image, Message, Reasoning, ToolCall, ToolChoice, ToolSpec

SKIPPED_BLOCKS = frozenset({"thinking", "redacted_thinking"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MessageIn(_Model):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class ToolIn(_Model):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    input_schema: dict[str, Any]
    type: str | None = None


class ToolChoiceIn(_Model):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(_Model):
    user_id: str | None = None


class OutputFormat(_Model):
    type: Literal["json_schema"]
    schema_: Annotated[dict[str, Any], Field(alias="schema")]


class OutputConfig(_Model):
    format: OutputFormat | None = None


class CountTokensBody(_Model):
    model: str
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    tools: list[ToolIn] | None = None
    tool_choice: ToolChoiceIn | None = None


class MessagesBody(CountTokensBody):
    max_tokens: Annotated[int, Field(ge=1)]
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    stream: bool = False
    metadata: Metadata | None = None
    output_config: OutputConfig | None = None
    thinking: dict[str, Any] | None = None
    service_tier: str | None = None

    def reasoning(self) -> Reasoning | None:
        budget = (self.thinking or {}).get("budget_tokens")
        if (self.thinking or {}).get("type") != "enabled":
            return None
        return Reasoning(budget_tokens=budget if isinstance(budget, int) else None)

    def response_format(self) -> dict[str, Any] | None:
        """Structured output (`output_config.format`) in the normalized (OpenAI-shaped) response_format."""
        fmt = self.output_config.format if self.output_config else None
        return None if fmt is None else {"type": "json_schema",
                                         "json_schema": {"name": "output", "schema": fmt.schema_, "strict": True}}


def _block_text(value: Any, where: str) -> str:
    """Text of a string or a list of text blocks (system prompts and tool_result contents)."""
    if value is None or isinstance(value, str):
        return value or ""
    parts: list[str] = []
    for i, block in enumerate(value if isinstance(value, list) else [value]):
        if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            kind = block.get("type") if isinstance(block, dict) else type(block).__name__
            raise InvalidRequestError(f"{where}[{i}]: only text blocks are supported here, got {kind!r}",
                                      param=where)
        parts.append(block["text"])
    return "\n\n".join(parts) if where == "system" else "".join(parts)


def to_messages(body: CountTokensBody, others: list[str] | None = None) -> list[Message]:
    """The normalized turns, each remembering its message's index in the body. Image and document blocks are named
    in `others` (only Anthropic takes them; rhetor.providers.fidelity), or refused when `others` is None."""
    out: list[Message] = []
    names: dict[str, str] = {}
    for i, m in enumerate(body.messages):
        if isinstance(m.content, str):
            out.append(Message(m.role, m.content, raw_index=i))
            continue
        texts: list[str] = []
        calls: list[ToolCall] = []
        images: list[Image] = []
        first = len(out)
        for j, block in enumerate(m.content):
            kind, where = block.get("type"), f"messages[{i}].content[{j}]"
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "tool_use" and m.role == "assistant":
                calls.append(ToolCall(str(block.get("id", "")), str(block.get("name", "")),
                                      orjson.dumps(block.get("input") or {}).decode()))
                names[calls[-1].id] = calls[-1].name
            elif kind == "tool_result" and m.role == "user":
                call_id = str(block.get("tool_use_id", ""))
                out.append(Message("tool", _block_text(block.get("content"), f"{where}.content"),
                                   tool_call_id=call_id, name=names.get(call_id),
                                   is_error=bool(block.get("is_error")), raw_index=i))
            elif kind == "image" and m.role == "user" and others is not None:
                images.append(anthropic_image(block, where))
            elif kind in ("image", "document") and others is not None:
                others.append(f"{where} ({kind})")
            elif kind not in SKIPPED_BLOCKS:
                raise InvalidRequestError(f"{where}: {kind!r} blocks are not supported for role {m.role!r}",
                                          param=where)
        if m.role == "assistant":
            out.append(Message("assistant", "".join(texts), tool_calls=calls or None, raw_index=i))
        elif texts or images or len(out) == first:  # a turn of images only still has its place
            out.append(Message("user", "".join(texts), raw_index=i, images=images or None))
    return out


# The common small body (`model`, `max_tokens`, plain-text turns, a text `system`, `stream`) is checked here instead
# of by pydantic: `model_validate` of the `an` body alone cost ~23k instructions (callgrind), this check with its
# Messages built ~12k (the `an` request: 922k -> 863k). Any other body takes the full validation, so what is accepted,
# refused and how is unchanged; every other knob keeps its default (`_DEFAULTS`).
_QUICK_FIELDS = frozenset({"model", "max_tokens", "messages", "system", "stream"})
_QUICK_TURN = frozenset({"role", "content"})
_DEFAULTS = MessagesBody.model_construct(model="", messages=[], max_tokens=1)


def quick_messages(raw: Any) -> list[Message] | None:
    """`to_messages` of a body made only of a model, `max_tokens`, plain-text turns, a text system prompt and
    `stream`; None for any other body, which pydantic validates."""
    if type(raw) is not dict or not _QUICK_FIELDS.issuperset(raw) or type(raw.get("model")) is not str \
            or type(raw.get("stream", False)) is not bool or type(raw.get("system", "")) is not str:
        return None
    limit, turns = raw.get("max_tokens"), raw.get("messages")
    if type(limit) is not int or limit < 1 or type(turns) is not list or not turns:
        return None
    out: list[Message] = []
    for i, m in enumerate(turns):
        if type(m) is not dict or not _QUICK_TURN.issuperset(m):
            return None
        role, content = m.get("role"), m.get("content")
        if type(content) is not str or (role != "user" and role != "assistant"):
            return None
        out.append(Message(role, content, raw_index=i))
    return out


def tools_and_choice(body: CountTokensBody) -> tuple[list[ToolSpec] | None, ToolChoice | None]:
    for i, t in enumerate(body.tools or []):
        if t.type not in (None, "custom"):
            raise InvalidRequestError(f"tools[{i}]: server tool {t.type!r} is not supported", param=f"tools[{i}]")
    tools = [ToolSpec(t.name, t.description or "", t.input_schema) for t in body.tools or []] or None
    c = body.tool_choice
    if c is None:
        return tools, None
    mode = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}[c.type]
    if mode == "tool" and not c.name:
        raise InvalidRequestError("tool_choice.name is required when tool_choice.type is 'tool'",
                                  param="tool_choice.name")
    parallel = False if c.disable_parallel_tool_use else None
    return tools, ToolChoice(mode, c.name, parallel)  # type: ignore[arg-type]


def message(outcome: ChatOutcome, message_id: str) -> dict[str, Any]:
    r = outcome.response
    content: list[dict[str, Any]] = [{"type": "text", "text": r.content}] if r.content or not r.tool_calls else []
    if r.reasoning:  # an OpenAI-compatible server's reasoning_content; no signature: it was not Anthropic's
        content.insert(0, {"type": "thinking", "thinking": r.reasoning, "signature": ""})
    for call in r.tool_calls:
        try:
            arguments = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            arguments = {"_raw": call.arguments}  # a model wrote invalid JSON: pass it on, visibly
        content.append({"type": "tool_use", "id": call.id, "name": call.name,
                        "input": arguments if isinstance(arguments, dict) else {"value": arguments}})
    return {"id": message_id, "type": "message", "role": "assistant", "model": f"{r.provider}/{r.model}",
            "content": content, "stop_reason": stop_reason(r.finish_reason, r.stop_sequence),
            "stop_sequence": r.stop_sequence, "usage": anthropic_usage(r.usage)}


def estimate_input(body: CountTokensBody) -> int:
    """Rhetor's offline estimate (~4 characters a token, plus per-message overhead): not a vendor tokenizer."""
    return _estimate(body.system, [m.content for m in body.messages], [t.model_dump() for t in body.tools or []])


def _estimate(system: Any, contents: list[Any], tools: list[dict[str, Any]]) -> int:
    text = orjson.dumps([system, contents, tools]).decode()
    return estimate_tokens(text) + 4 * len(contents)


def _quick_estimate(raw: dict[str, Any]) -> int:
    return _estimate(raw.get("system"), [m["content"] for m in raw["messages"]], [])


def _system_text(body: CountTokensBody) -> str | None:
    """The system prompt's text (cache_control on its blocks only matters to Anthropic: pass-through)."""
    return _block_text(body.system, "system") or None


async def messages(request: Request) -> Response:
    raw = parse_json(await request.body())
    others: list[str] = []
    quick = quick_messages(raw)
    if quick is not None:  # model, max_tokens, plain-text turns, system and stream only: other knobs at defaults
        body, turns, system, stream = _DEFAULTS, quick, raw.get("system") or None, raw.get("stream", False)
        route = resolve(request, raw["model"])
        pt = passthrough(request, "anthropic", raw, system, others)
        inp = chat_input(request, route, turns, system, {"max_tokens": raw["max_tokens"]}, passthrough=pt)
    else:
        body = MessagesBody.model_validate(raw)
        route = resolve(request, body.model)
        tools, choice = tools_and_choice(body)
        options = {"temperature": body.temperature, "top_p": body.top_p, "stop": body.stop_sequences,
                   "max_tokens": body.max_tokens, "top_k": body.top_k}
        turns, system, stream = to_messages(body, others), _system_text(body), body.stream
        pt = passthrough(request, "anthropic", raw, system, others)
        inp = chat_input(request, route, turns, system, options,
                         tools=tools, tool_choice=choice, user=body.metadata.user_id if body.metadata else None,
                         response_format=body.response_format(), passthrough=pt, reasoning=body.reasoning(),
                         service_tier=body.service_tier)
    gw = gateway(request)
    attribute(inp, request, "anthropic")
    if stream:
        session = await gw.open_stream(inp)
        # the input estimate only a stream framed here shows: none made for a relayed one
        estimate = partial(estimate_input, body) if quick is None else \
            partial(_quick_estimate, raw)
        frames, relayed = await events(session, new_id("msg_"), estimate)
        return sse_response(frames, [*session_header_list(session), *fidelity_header_list(pt, relayed)])
    outcome = await gw.chat(inp)
    r = outcome.response
    headers = [*rhetor_header_list(r.provider, r.model, outcome.info, r.simulated),
               *fidelity_header_list(pt, r.raw is not None)]
    if r.raw is not None:  # the upstream spoke this API: its answer as received, every field intact
        return EncodedResponse(r.raw, headers)
    return EncodedResponse(orjson.dumps(message(outcome, new_id("msg_"))), headers)


async def count_tokens(request: Request) -> Response:
    body = await read_body(request, CountTokensBody)
    route = resolve(request, body.model)  # an unknown model is a 404, as the real endpoint answers
    messages = to_messages(body)
    tools, choice = tools_and_choice(body)
    if route.provider_id is not None:  # a vendor that counts (Gemini's countTokens) answers with its own count
        inp = chat_input(request, route, messages, _block_text(body.system, "system") or None, {}, tools=tools,
                         tool_choice=choice)
        try:
            counted = await gateway(request).count_tokens(inp)
        except ProviderError:  # no key, or the vendor's count failed: Rhetor's estimate, marked as one
            counted = None
        if counted is not None:
            tokens, provider, model = counted
            return json_response({"input_tokens": tokens}, headers={"x-rhetor-token-count": f"{provider}/{model}"})
    return json_response({"input_tokens": estimate_input(body), "estimated": True,
                          "method": "rhetor offline estimate (~4 characters per token), not a vendor tokenizer"},
                         headers={"x-rhetor-token-count": "estimate"})


routes: list[BaseRoute] = [
    Route("/v1/messages", compat_endpoint(ANTHROPIC, messages), methods=["POST"]),
    Route("/v1/messages/count_tokens", compat_endpoint(ANTHROPIC, count_tokens), methods=["POST"]),
]

__all__ = ["STOP_REASONS", "MessagesBody", "count_tokens", "message", "messages", "routes", "to_messages"]
