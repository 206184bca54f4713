"""Memory routes: search a context or a component's contexts, summarize a context with its routed model,
and the indexer's status (embedder, backlog). Each handler validates, calls the gateway's `Memory` or the
gateway itself, and frames; the logic lives in rhetor/context/retrieval.py.

Routes: `POST /api/v1/contexts/{id}/search {query, k}` (R1's `?query=` form too), `POST
/api/v1/components/{component}/search {query, k}`, `POST /api/v1/memory/search {query, k, context_id?,
component?}`, `POST /api/v1/contexts/{id}/summarize`, `GET /api/v1/memory/status[?context_id=]`.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.responses import invalid, json_response, parse_json
from rhetor.api.state import gateway
from rhetor.context.retrieval import Memory
from rhetor.context.store import component_of, validate_context_id
from rhetor.errors import InvalidRequestError, RhetorError
from rhetor.gateway import ChatInput

MAX_TRANSCRIPT_CHARS: Final = 24_000  # ~6k tokens: fits the smallest routed window with room for the reply
SUMMARY_PROMPT: Final = (
    "Summarize the conversation below for someone who will continue it: the goals, the decisions and facts "
    "established, and what is still open. Be concise; use short bullet points.\n\nConversation:\n"
)
_COMPONENT: Final = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1, max_length=10_000)
    k: int = Field(5, ge=1, le=100)
    context_id: str | None = Field(None, min_length=1, max_length=256)
    component: str | None = Field(None, min_length=1, max_length=64)


class SummarizeBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    max_messages: int = Field(200, ge=1, le=10_000)
    task_type: str | None = None
    provider_id: str | None = None
    model_id: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def _memory(request: Request) -> Memory:
    memory = gateway(request).memory
    if memory is None:
        raise RhetorError("memory is not running")
    return memory


async def _data(request: Request, *, query_params: bool = False) -> Any:
    """The JSON body, or (where R1 sent them so) the query parameters when the body is empty."""
    raw = await request.body()
    if raw or not query_params:
        return parse_json(raw)
    return dict(request.query_params)


async def _search_body(request: Request, *, query_params: bool = False) -> SearchBody | Response:
    try:
        return SearchBody.model_validate(await _data(request, query_params=query_params))
    except ValidationError as exc:
        return invalid(list(exc.errors()))


def _component(value: str) -> str:
    if not _COMPONENT.match(value):
        raise InvalidRequestError("component must be 1-64 letters, digits, '_', '-' or '.'", param="component")
    return value.lower()


def _not_found(context_id: str) -> Response:
    return json_response({"error": {"type": "not_found", "message": f"no context {context_id!r}"}}, 404)


async def _answer(memory: Memory, body: SearchBody, **scope: str | None) -> Response:
    mode, hits = await memory.search(body.query, k=body.k, context_id=scope.get("context_id"),
                                     component=scope.get("component"))
    return json_response({"query": body.query, "k": body.k, "retrieval": mode, **scope,
                          "results": [h.as_dict() for h in hits]})


async def search_context(request: Request) -> Response:
    context_id = validate_context_id(request.path_params["context_id"])
    body = await _search_body(request, query_params=True)
    if isinstance(body, Response):
        return body
    if await gateway(request).store.get_summary(context_id) is None:
        return _not_found(context_id)
    return await _answer(_memory(request), body, context_id=context_id)


async def search_component(request: Request) -> Response:
    component = _component(request.path_params["component"])
    body = await _search_body(request)
    if isinstance(body, Response):
        return body
    return await _answer(_memory(request), body, component=component)


async def search_all(request: Request) -> Response:
    body = await _search_body(request)
    if isinstance(body, Response):
        return body
    if body.context_id is not None and body.component is not None:
        raise InvalidRequestError("give at most one of context_id or component", param="component")
    component = _component(body.component) if body.component is not None else None
    return await _answer(_memory(request), body, context_id=body.context_id, component=component)


async def summarize(request: Request) -> Response:
    context_id = validate_context_id(request.path_params["context_id"])
    raw = await request.body()
    try:
        body = SummarizeBody.model_validate(parse_json(raw) if raw else {})
    except ValidationError as exc:
        return invalid(list(exc.errors()))
    gw = gateway(request)
    if await gw.store.get_summary(context_id) is None:
        return _not_found(context_id)
    stored = [m for m in await gw.store.history(context_id) if m.role in ("user", "assistant")]
    recent = stored[-body.max_messages:]
    if not recent:
        raise InvalidRequestError(f"context {context_id!r} has no complete messages to summarize",
                                  param="context_id")
    transcript = "\n\n".join(f"{m.role}: {m.content}" for m in recent)[-MAX_TRANSCRIPT_CHARS:]
    # No context_id on the request: the summary is not recorded as a turn of the conversation it summarizes.
    outcome = await gw.chat(ChatInput(message=SUMMARY_PROMPT + transcript, component=component_of(context_id),
                                      task_type=body.task_type, provider_id=body.provider_id,
                                      model_id=body.model_id, options=dict(body.options)))
    r = outcome.response
    return json_response({"context_id": context_id, "summary": r.content, "message_count": len(recent),
                          "first_message_id": recent[0].id, "last_message_id": recent[-1].id,
                          "model": r.model, "provider": r.provider, "simulated": r.simulated,
                          "fallback": outcome.info.fallback, "usage": r.usage.as_dict(),
                          "attempts": outcome.info.attempts_dicts(), "timestamp": outcome.timestamp})


async def status(request: Request) -> Response:
    raw = request.query_params.get("context_id")
    context_id = validate_context_id(raw) if raw is not None else None
    return json_response(await _memory(request).status(context_id))


routes: list[BaseRoute] = [
    Route("/api/v1/memory/status", status, methods=["GET"]),
    Route("/api/v1/memory/search", search_all, methods=["POST"]),
    Route("/api/v1/components/{component}/search", search_component, methods=["POST"]),
    Route("/api/v1/contexts/{context_id:path}/search", search_context, methods=["POST"]),
    Route("/api/v1/contexts/{context_id:path}/summarize", summarize, methods=["POST"]),
    Route("/contexts/{context_id:path}/search", search_context, methods=["POST"]),  # R1's secondary routes
    Route("/contexts/{context_id:path}/summarize", summarize, methods=["POST"]),
]

__all__ = ["SearchBody", "SummarizeBody", "routes"]
