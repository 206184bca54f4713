"""The OpenAI Responses API on any provider: POST /v1/responses (JSON, or SSE with the real event sequence),
GET and DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, POST /v1/responses/{id}/cancel.

A request goes through the gateway's normalized path (ChatInput / open_stream) like every other front, so
Anthropic, OpenAI, Ollama and the simulated provider all answer it, and the usage ledger meters it (front
`openai-responses`). `previous_response_id` and `store` are backed by Rhetor's context store
(rhetor.api.openai.conversation). Errors are OpenAI's (rhetor.api.compat.errors). Knows the gateway, never providers.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.attribution import attribute
from rhetor.api.compat.common import SSE_HEADERS, read_body, resolve, rhetor_headers, sse_response
from rhetor.api.compat.errors import compat_endpoint
from rhetor.api.openai import conversation
from rhetor.api.openai.errors import OPENAI
from rhetor.api.openai.objects import ResponseShell, output_items
from rhetor.api.openai.responses_stream import response_events
from rhetor.api.openai.wire import (
    CreateBody,
    Item,
    canonical_items,
    new_item_id,
    refuse_unsupported,
    response_format_of,
    to_messages,
    tool_choice_of,
    tools_of,
)
from rhetor.api.responses import json_response
from rhetor.api.state import gateway
from rhetor.context.responses import ResponseIndex
from rhetor.context.store import validate_context_id
from rhetor.errors import InvalidRequestError
from rhetor.gateway import ChatInput

FRONT = "openai-responses"


def index(request: Request) -> ResponseIndex:
    found: ResponseIndex = request.app.state.responses
    return found


async def create(request: Request) -> Response:
    body = await read_body(request, CreateBody)
    refuse_unsupported(body)
    route = resolve(request, body.model)
    tools, tools_echo = tools_of(body)
    response_format = response_format_of(body)
    new_items = canonical_items(body.input)
    header_context = request.headers.get("x-rhetor-context-id") or None
    if header_context is not None:
        validate_context_id(header_context)
    component = request.headers.get("x-rhetor-component") or None
    response_id = new_item_id("resp")
    gw, idx = gateway(request), index(request)
    fresh_context = validate_context_id(f"{component}:{response_id}" if component else response_id)
    convo = await conversation.load(gw, idx, body.previous_response_id, header_context, fresh_context)
    messages, systems = to_messages([*convo.prior, *new_items])
    if not any(m.role != "system" for m in messages):
        raise InvalidRequestError("input is empty: give a message (or continue with previous_response_id)",
                                  param="input")
    system = "\n\n".join([*([body.instructions] if body.instructions else []), *systems]) or None
    options = {"temperature": body.temperature, "top_p": body.top_p, "max_tokens": body.max_output_tokens}
    inp = ChatInput(messages=messages, context_id=convo.context_id, task_type=route.task_type, component=component,
                    provider_id=route.provider_id, model_id=route.model_id, system_prompt=system,
                    options={k: v for k, v in options.items() if v is not None}, pinned=route.pinned,
                    tools=tools or None, tool_choice=tool_choice_of(body), response_format=response_format,
                    user=body.user or body.safety_identifier, record=False)
    recalled = await conversation.recall(gw, inp, convo, new_items, system)  # an overflowing history: memory picks
    if recalled is not None:
        inp.messages = to_messages([*recalled[0], *new_items])[0]  # (fit_history keeps calls with their outputs)
    notes = {"x-rhetor-context-id": convo.context_id,
             **({"x-rhetor-retrieval": recalled[1].mode} if recalled is not None else {})}
    attribute(inp, request, FRONT)
    shell = ResponseShell(body, response_id, tools_echo)
    keep = body.store is not False

    async def finish(response: dict[str, Any] | None, output: list[Item], status: str) -> None:
        if keep:
            await conversation.record(gw, idx, convo, response_id, new_items, output, response, status)

    if body.stream:
        session = await gw.open_stream(inp)
        headers = {**SSE_HEADERS, **rhetor_headers(session.provider, session.model, session.info, session.simulated),
                   **notes}
        return sse_response(response_events(session, shell, finish), headers)
    outcome = await gw.chat(inp)
    r = outcome.response
    output = output_items(r.content, r.tool_calls)
    response = shell.build("completed", output, r.usage, model=f"{r.provider}/{r.model}", finish=r.finish_reason)
    await finish(response, output, "complete")
    return json_response(response, headers={**rhetor_headers(r.provider, r.model, outcome.info, r.simulated),
                                            **notes})


async def retrieve(request: Request) -> Response:
    if request.query_params.get("stream", "false").lower() not in ("false", "0"):
        raise InvalidRequestError("stream is not supported when retrieving a stored response", param="stream")
    rid = request.path_params["response_id"]
    found = await conversation.stored_response(gateway(request), index(request), rid, "response_id")
    return json_response(found.body, headers={"x-rhetor-context-id": found.context_id})


async def delete(request: Request) -> Response:
    rid = request.path_params["response_id"]
    await conversation.stored_response(gateway(request), index(request), rid, "response_id")
    await index(request).delete(rid)
    return json_response({"id": rid, "object": "response.deleted", "deleted": True})


async def cancel(request: Request) -> Response:
    rid = request.path_params["response_id"]
    await conversation.stored_response(gateway(request), index(request), rid, "response_id")
    raise InvalidRequestError(f"response {rid!r} is not a background response (Rhetor runs none); it already "
                              "finished and cannot be cancelled", param="response_id")


def _limit(raw: str | None) -> int:
    try:
        limit = int(raw) if raw is not None else 20
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequestError(f"limit must be an integer from 1 to 100, got {raw!r}", param="limit")
    return limit


async def input_items(request: Request) -> Response:
    rid = request.path_params["response_id"]
    found = await conversation.stored_response(gateway(request), index(request), rid, "response_id")
    q = request.query_params
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequestError(f"order must be asc or desc, got {order!r}", param="order")
    limit = _limit(q.get("limit"))
    items = found.input_items if order == "asc" else list(reversed(found.input_items))
    after = q.get("after")
    if after is not None:
        ids = [it["id"] for it in items]
        if after not in ids:
            raise InvalidRequestError(f"after: no input item {after!r} in response {rid!r}", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return json_response({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                          "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit})


routes: list[BaseRoute] = [
    Route("/v1/responses", compat_endpoint(OPENAI, create), methods=["POST"]),
    Route("/v1/responses/{response_id}", compat_endpoint(OPENAI, retrieve), methods=["GET"]),
    Route("/v1/responses/{response_id}", compat_endpoint(OPENAI, delete), methods=["DELETE"]),
    Route("/v1/responses/{response_id}/cancel", compat_endpoint(OPENAI, cancel), methods=["POST"]),
    Route("/v1/responses/{response_id}/input_items", compat_endpoint(OPENAI, input_items), methods=["GET"]),
]

__all__ = ["FRONT", "routes"]
