"""Native routes — the tekton-llm-client contract: providers, models, chat, chat/stream (SSE) and
context inspection; `/api/v1/generate` (+ `_stream`) for the adapter-era and 2025 bodies, and the 2025
rhetor_client's `GET /api/models/assignments`. Each handler parses, calls the Gateway, frames. No business
logic lives here.

They are plain Starlette routes, not FastAPI path operations: FastAPI's per-request dependency solving and
nested-router matching cost ~20% of a proxied request (measured with py-spy, see benchmarks/README.md), and
these handlers parse and validate their bodies themselves anyway.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from rhetor.api.attribution import attribute
from rhetor.api.context_scope import Scope, annotate, scope_input
from rhetor.api.native import shapes
from rhetor.api.native.schemas import ChatBody, GenerateBody, quick_input
from rhetor.api.responses import invalid, json_response, parse_json
from rhetor.api.state import gateway
from rhetor.api.streaming import ClosingStreamingResponse, Relay
from rhetor.context.store import validate_context_id
from rhetor.errors import InvalidRequestError
from rhetor.gateway import StreamSession
from rhetor.providers.listing import listed_models, source_headers
from rhetor.routing.assignments import assignments as model_assignments
from rhetor.routing.assignments import config_components

CONTEXTS_PREFIX = "/api/v1/contexts/"
EXPORT_SUFFIX = "/export"


async def _body(request: Request, kind: type[ChatBody] = ChatBody) -> ChatBody | Response:
    data = parse_json(await request.body())
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        return invalid(list(exc.errors()))


class _Frames(Relay):
    """A session's events as native SSE frames, sent by ClosingStreamingResponse directly (no generator layer)."""

    __slots__ = ("scope", "session")

    def __init__(self, session: StreamSession, done_sentinel: bool, scope: Scope | None) -> None:
        super().__init__(session.events(), last=b"data: [DONE]\n\n" if done_sentinel else b"")
        self.session, self.scope = session, scope

    def chunk(self, event: Any) -> bytes:
        frame = shapes.stream_frame(self.session, event)
        return b"data: " + orjson.dumps(annotate(frame, self.scope) if self.scope else frame) + b"\n\n"


_SSE_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


def sse(session: StreamSession, *, done_sentinel: bool = True, scope: Scope | None = None) -> StreamingResponse:
    return ClosingStreamingResponse.sse(_Frames(session, done_sentinel, scope), _SSE_HEADERS)


async def providers(request: Request) -> Response:
    status = await gateway(request).provider_status()
    status["current_provider"] = status["default_provider"]
    status["current_model"] = status["default_model"]
    return json_response(status)


async def models(request: Request) -> Response:
    """What each provider serves, live where it lists (rhetor.providers.listing; headers say the source)."""
    gw = gateway(request)
    status = await gw.provider_status()
    listings = await listed_models(gw.providers)
    data = [{"id": f"{pid}/{m}", "provider": pid, "model": m, "available": p["available"]}
            for pid, p in status["providers"].items() for m in listings[pid].models]
    return json_response({"models": data, "default_provider": status["default_provider"],
                          "default_model": status["default_model"]}, headers=source_headers(listings))


async def _answer(request: Request, body: ChatBody, stream: bool) -> Response:
    """Over HTTP a shared context id (`ergon`, `default`) is stateless: rhetor.api.context_scope. (`chat` has
    this inline.)"""
    gw = gateway(request)
    inp = attribute(body.to_input(), request, "native")
    scope = scope_input(gw, inp)
    if stream:
        return sse(await gw.open_stream(inp), scope=scope)
    return json_response(annotate(shapes.result(await gw.chat(inp)), scope))


async def chat(request: Request) -> Response:
    data = parse_json(await request.body())
    quick = quick_input(data)  # the common small body, checked without pydantic (rhetor.api.native.schemas)
    if quick is not None:
        inp, stream = quick
    else:
        try:
            body = ChatBody.model_validate(data)
        except ValidationError as exc:
            return invalid(list(exc.errors()))
        inp, stream = body.to_input(), body.streaming
    # `_answer` inline: one coroutine fewer on the hot route
    gw = gateway(request)
    scope = scope_input(gw, attribute(inp, request, "native"))
    if stream:
        return sse(await gw.open_stream(inp), scope=scope)
    return json_response(annotate(shapes.result(await gw.chat(inp)), scope))


async def chat_stream(request: Request) -> Response:
    body = await _body(request)
    if isinstance(body, Response):
        return body
    return await _answer(request, body, True)


async def generate(request: Request) -> Response:
    """POST /api/v1/generate: the adapter body `{model, messages, …}` or the 2025 `{prompt, model, capability, …}`."""
    body = await _body(request, GenerateBody)
    if isinstance(body, Response):
        return body
    return await _answer(request, body, body.streaming)


async def generate_stream(request: Request) -> Response:
    body = await _body(request, GenerateBody)
    if isinstance(body, Response):
        return body
    return await _answer(request, body, True)


async def assignments(request: Request) -> Response:
    """GET /api/models/assignments: component → capability → model, from the routing config."""
    gw = gateway(request)
    prompted = [t["id"].removeprefix("system.") for t in gw.templates.list() if t["id"].startswith("system.")]
    components = {*config_components(gw.config), *(c for c in prompted if c not in ("default", "generic"))}
    return json_response(model_assignments(gw.config, gw.defaults, components))


async def list_contexts(request: Request) -> Response:
    items = await gateway(request).store.list_contexts()
    return json_response({"contexts": [_summary(s) for s in items], "total": len(items)})


def _context_path(request: Request) -> tuple[str, bool]:
    """(context id, export?) of `GET /api/v1/contexts/<id>`. Ids are path-escaped: read from the raw path,
    `a%2Fexport` is the id `a/export`; a literal trailing `/export` (or `?format=r1`) asks for the R1 export."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else ""
    if path.startswith(CONTEXTS_PREFIX):
        rest = path[len(CONTEXTS_PREFIX):]
        export = rest.endswith(EXPORT_SUFFIX)
        context_id = unquote(rest.removesuffix(EXPORT_SUFFIX), errors="strict")
    else:  # no raw path (or an escaped prefix): the decoded path, as routed
        context_id = request.path_params["context_id"]
        export = context_id.endswith(EXPORT_SUFFIX)
        context_id = context_id.removesuffix(EXPORT_SUFFIX)
    return context_id, export or request.query_params.get("format") == "r1"


async def get_context(request: Request) -> Response:
    try:
        context_id, export = _context_path(request)
    except UnicodeDecodeError:
        raise InvalidRequestError("context_id is not valid UTF-8 once unescaped", param="context_id") from None
    if export:
        validate_context_id(context_id)
        data = await gateway(request).store.export(context_id)
        return _not_found(context_id) if data is None else json_response(data)
    offset, limit = _int_param(request, "offset", 0), _int_param(request, "limit", 50)
    validate_context_id(context_id)
    if offset < 0 or not 1 <= limit <= 1000:
        raise InvalidRequestError("offset must be >= 0 and limit between 1 and 1000", param="limit")
    store = gateway(request).store
    summary = await store.get_summary(context_id)
    if summary is None:
        return _not_found(context_id)
    messages, total = await store.page(context_id, offset=offset, limit=limit)
    return json_response({**_summary(summary), "offset": offset, "limit": limit, "total": total,
                          "messages": [{"id": m.id, "role": m.role, "content": m.content,
                                        "timestamp": m.timestamp, "metadata": m.metadata} for m in messages]})


async def delete_context(request: Request) -> Response:
    context_id = request.path_params["context_id"]
    validate_context_id(context_id)
    if not await gateway(request).store.delete(context_id):
        return _not_found(context_id)
    return json_response({"deleted": True, "context_id": context_id})


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequestError(f"{name} must be an integer, got {raw!r}", param=name) from None


def _summary(s: Any) -> dict[str, Any]:
    return {"context_id": s.context_id, "created_at": s.created_at, "updated_at": s.updated_at,
            "message_count": s.message_count, "component": s.component}


def _not_found(context_id: str) -> Response:
    return json_response({"error": {"type": "not_found", "message": f"no context {context_id!r}"}}, 404)


routes: list[BaseRoute] = [
    Route("/api/v1/providers", providers, methods=["GET"]),
    Route("/api/v1/models", models, methods=["GET"]),
    Route("/api/v1/chat", chat, methods=["POST"]),
    Route("/api/v1/chat/stream", chat_stream, methods=["POST"]),
    Route("/api/v1/generate", generate, methods=["POST"]),
    Route("/api/v1/generate_stream", generate_stream, methods=["POST"]),
    Route("/api/models/assignments", assignments, methods=["GET"]),
    Route("/api/v1/contexts", list_contexts, methods=["GET"]),
    Route("/api/v1/contexts/{context_id:path}", get_context, methods=["GET"]),
    Route("/api/v1/contexts/{context_id:path}", delete_context, methods=["DELETE"]),
]

__all__ = ["routes", "sse"]
