"""The OpenAI-compatible front: POST /v1/chat/completions (JSON, or SSE `chat.completion.chunk`s ending with
`data: [DONE]`), plus the route table that also carries /v1/models and /v1/embeddings (their own modules).

Any provider answers behind it (model names: rhetor.routing.models). An OpenAI(-compatible) upstream gets the
caller's body as sent and its answer is relayed as received (same-vendor pass-through); any other gets the
normalized fields, and a field it cannot honour is refused with a 400 naming it, or dropped and listed in lenient
mode (rhetor.providers.fidelity, docs/fronts.md). Errors are OpenAI's (rhetor.api.compat.errors). Plain
Starlette routes, like the native API, to keep the hot path lean. Knows the gateway, never providers.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.attribution import attribute
from rhetor.api.compat.common import (
    EncodedResponse,
    chat_input,
    new_id,
    resolve,
    rhetor_header_list,
    session_header_list,
    sse_response,
    unix_now,
)
from rhetor.api.compat.errors import compat_endpoint
from rhetor.api.compat.fidelity import fidelity_header_list, openai_image, openai_usage, passthrough
from rhetor.api.openai import completions, embeddings, fanout, models
from rhetor.api.openai.chat_stream import FINISH, chunks
from rhetor.api.openai.errors import OPENAI
from rhetor.api.responses import parse_json
from rhetor.api.state import gateway
from rhetor.errors import InvalidRequestError
from rhetor.gateway import ChatOutcome
from rhetor.types import Image, Message, Reasoning, ToolCall, ToolChoice, ToolSpec


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class FunctionDef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=128)]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolDef(_Model):
    type: Literal["function"]
    function: FunctionDef


class CallFunction(_Model):
    name: str
    arguments: str = "{}"


class ToolCallIn(_Model):
    id: str
    type: Literal["function"] = "function"
    function: CallFunction


class MessageIn(_Model):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None


class NamedFunction(_Model):
    name: str


class NamedChoice(_Model):
    type: Literal["function"]
    function: NamedFunction


class StreamOptions(_Model):
    include_usage: bool = False


class ChatCompletionBody(_Model):
    model: str
    messages: Annotated[list[MessageIn], Field(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None
    max_completion_tokens: Annotated[int, Field(gt=0)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    tools: list[ToolDef] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedChoice | None = None
    parallel_tool_calls: bool | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    service_tier: str | None = None

    @model_validator(mode="after")
    def _formats(self) -> ChatCompletionBody:
        kind = (self.response_format or {}).get("type", "text")
        if kind not in ("text", "json_object", "json_schema"):
            raise ValueError(f"response_format.type must be text, json_object or json_schema, got {kind!r}")
        return self


def _text(content: str | list[dict[str, Any]] | None, where: str, others: list[str] | None = None,
          images: list[Image] | None = None) -> str:
    """The text of a message's content; images go to `images` (translated for every provider), other parts (audio,
    files) are named in `others`: only a same-vendor upstream takes them (rhetor.providers.fidelity), any other
    refuses them or, lenient, drops them."""
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[str] = []
    for i, part in enumerate(content):
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif part.get("type") == "image_url" and images is not None:
            images.append(openai_image(part, f"{where}.content[{i}]"))
        elif others is not None and isinstance(part.get("type"), str):
            others.append(f"{where}.content[{i}] ({part['type']})")
        else:
            raise InvalidRequestError(f"{where}.content[{i}]: only text parts are supported, got "
                                      f"{part.get('type')!r}", param=f"{where}.content")
    return "".join(parts)


def to_messages(body: ChatCompletionBody, others: list[str] | None = None) -> tuple[list[Message], str | None]:
    """(conversation, system prompt from system/developer messages); each turn remembers its index in the body."""
    systems: list[str] = []
    out: list[Message] = []
    names: dict[str, str] = {}  # tool call id -> tool name, for providers that name tool results
    for i, m in enumerate(body.messages):
        images: list[Image] = []
        text = _text(m.content, f"messages[{i}]", *((others, images) if m.role == "user" else (None, None)))
        if m.role in ("system", "developer"):
            systems.append(text)
        elif m.role == "assistant":
            calls = [ToolCall(c.id, c.function.name, c.function.arguments) for c in m.tool_calls or []]
            names.update((c.id, c.name) for c in calls)
            out.append(Message("assistant", text, tool_calls=calls or None, raw_index=i))
        elif m.role == "tool":
            if not m.tool_call_id:
                raise InvalidRequestError(f"messages[{i}].tool_call_id is required for role 'tool'",
                                          param=f"messages[{i}].tool_call_id")
            out.append(Message("tool", text, tool_call_id=m.tool_call_id, name=names.get(m.tool_call_id),
                               raw_index=i))
        else:
            out.append(Message("user", text, raw_index=i, images=images or None))
    return out, "\n\n".join(systems) or None


# The common small body (`model`, plain-text `messages`, `stream`) is checked here instead of by pydantic:
# `model_validate` of the `oa` body alone cost ~28k instructions (callgrind), this check with its Messages built ~11k
# (the `oa` request: 899k -> 829k with the gateway's one-pass messages). Any other body (another field, a content part
# list, a tool turn) takes the full validation, so what is accepted, refused and how is unchanged; every other knob
# keeps its default (`_DEFAULTS`).
_QUICK_FIELDS = frozenset({"model", "messages", "stream"})
_QUICK_TURN = frozenset({"role", "content"})
_DEFAULTS = ChatCompletionBody.model_construct(model="", messages=[])


def quick_messages(raw: Any) -> tuple[list[Message], str | None] | None:
    """`to_messages` of a body made only of a model, plain-text turns (no tool turns) and `stream`; None for any
    other body, which pydantic validates."""
    if type(raw) is not dict or not _QUICK_FIELDS.issuperset(raw) or type(raw.get("model")) is not str \
            or type(raw.get("stream", False)) is not bool:
        return None
    turns = raw.get("messages")
    if type(turns) is not list or not turns:
        return None
    systems: list[str] = []
    out: list[Message] = []
    for i, m in enumerate(turns):
        if type(m) is not dict or not _QUICK_TURN.issuperset(m):
            return None
        role, content = m.get("role"), m.get("content")
        if type(content) is not str:
            return None
        if role == "user" or role == "assistant":
            out.append(Message(role, content, raw_index=i))
        elif role == "system" or role == "developer":
            systems.append(content)
        else:
            return None
    return out, "\n\n".join(systems) or None


def tool_choice(body: ChatCompletionBody) -> ToolChoice | None:
    choice, parallel = body.tool_choice, body.parallel_tool_calls
    if isinstance(choice, NamedChoice):
        return ToolChoice("tool", choice.function.name, parallel)
    if choice is None and parallel is None:
        return None
    return ToolChoice(choice or "auto", None, parallel)


def completion(outcome: ChatOutcome, completion_id: str) -> dict[str, Any]:
    r = outcome.response
    message: dict[str, Any] = {"role": "assistant", "content": r.content if r.content or not r.tool_calls else None,
                               "refusal": None}
    if r.reasoning:  # Anthropic thinking, as OpenAI-compatible servers carry reasoning
        message["reasoning_content"] = r.reasoning
    if r.tool_calls:
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name,
                                                                               "arguments": c.arguments}}
                                 for c in r.tool_calls]
    return {"id": completion_id, "object": "chat.completion", "created": unix_now(),
            "model": f"{r.provider}/{r.model}",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": FINISH[r.finish_reason]}],
            "usage": openai_usage(r.usage)}


async def chat_completions(request: Request) -> Response:
    raw = parse_json(await request.body())
    others: list[str] = []
    quick = quick_messages(raw)
    if quick is not None:  # model, plain-text turns and stream only: every other knob at its default
        body, (messages, system), stream = _DEFAULTS, quick, raw.get("stream", False)
        route = resolve(request, raw["model"])
        pt = passthrough(request, "openai", raw, system, others)
        inp = chat_input(request, route, messages, system, {}, passthrough=pt)
    else:
        body = ChatCompletionBody.model_validate(raw)
        route = resolve(request, body.model)
        messages, system = to_messages(body, others)
        stream = body.stream
        pt = passthrough(request, "openai", raw, system, others)
        stop = [body.stop] if isinstance(body.stop, str) else body.stop
        options = {"temperature": body.temperature, "top_p": body.top_p, "stop": stop,
                   "max_tokens": body.max_completion_tokens or body.max_tokens}
        tools = [ToolSpec(t.function.name, t.function.description or "",
                          t.function.parameters or {"type": "object", "properties": {}}) for t in body.tools or []]
        effort = body.reasoning_effort
        inp = chat_input(request, route, messages, system, options, tools=tools or None,
                         tool_choice=tool_choice(body), response_format=body.response_format, seed=body.seed,
                         user=body.user, passthrough=pt,
                         reasoning=Reasoning(effort=effort) if effort and effort != "none" else None,
                         service_tier=body.service_tier)
    gw = gateway(request)
    attribute(inp, request, "openai")
    if stream:
        session = await gw.open_stream(inp)
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        if (body.n or 1) > 1:  # relayed when the upstream takes n itself, else fanned out and merged
            frames, relayed = await fanout.stream(gw, inp, session, body.n or 1, new_id("chatcmpl-"), include_usage)
        else:
            frames, relayed = await chunks(session, new_id("chatcmpl-"), include_usage)
        return sse_response(frames, [*session_header_list(session), *fidelity_header_list(pt, relayed)])
    outcome = await gw.chat(inp)
    r = outcome.response
    headers = [*rhetor_header_list(r.provider, r.model, outcome.info, r.simulated),
               *fidelity_header_list(pt, r.raw is not None)]
    if r.raw is not None:  # the upstream spoke this API: its answer as received, every field intact (n included)
        return EncodedResponse(r.raw, headers)
    answer = completion(outcome, new_id("chatcmpl-"))
    n = body.n or 1
    if n > 1:  # an upstream without `n`: fan out, the turn recorded once (rhetor.api.openai.fanout)
        fanout.check_fanout(n)
        branches = await asyncio.gather(*(gw.chat(fanout.branch_input(inp)) for _ in range(n - 1)))
        await fan_out(answer, list(branches))
    return EncodedResponse(orjson.dumps(answer), headers)


async def fan_out(answer: dict[str, Any], others: list[ChatOutcome]) -> None:
    """`answer` with the other outcomes' choices appended (numbered) and their usage added."""
    usage = answer["usage"]
    for other in others:
        extra = completion(other, answer["id"])
        answer["choices"].append({**extra["choices"][0], "index": len(answer["choices"])})
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            usage[key] += extra["usage"][key]
        usage["prompt_tokens_details"]["cached_tokens"] += extra["usage"]["prompt_tokens_details"]["cached_tokens"]
        reasoning = extra["usage"]["completion_tokens_details"]["reasoning_tokens"]
        usage["completion_tokens_details"]["reasoning_tokens"] += reasoning


routes: list[BaseRoute] = [
    Route("/v1/chat/completions", compat_endpoint(OPENAI, chat_completions), methods=["POST"]),
    *models.routes,
    *embeddings.routes,
    *completions.routes,
]

__all__ = ["ChatCompletionBody", "chat_completions", "completion", "routes", "to_messages", "tool_choice"]
