"""Builds the OpenAPI 3.1 document of every HTTP route from the declarations of this package (one module per
front or route family), merged with whatever FastAPI itself can describe (path operations, if any), and checks
it against the app: `undescribed(app)` lists routes the document misses, `unserved(app)` operations no route
serves. rhetor.api.openapi.install makes `/openapi.json` (and so `/docs`) serve it, built on first request.
Knows the declarations and Starlette's route types; nothing of the handlers, the gateway or providers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute, Mount, Route

from rhetor.api.openapi import anthropic, governance, health, legacy, native, openai, templates, ui
from rhetor.api.openapi.common import SSE, Frames, Op, Param, Resp, RouteNotFound

MODULES = (native, legacy, openai, anthropic, templates, governance, health, ui)
REF = "#/components/schemas/{model}"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_CONVERTER = re.compile(r"\{(\w+):\w+\}")
DESCRIPTION = """\
Rhetor, the LLM gateway of the Tekton platform, on one port: the native API (tekton-llm-client and Tekton's 2025
rhetor_client), the LLM Adapter's legacy routes, OpenAI-compatible chat completions, embeddings, models and the
Responses API, the Anthropic-compatible Messages API, templates, contexts and memory, usage, budgets, keys,
health, metrics and the dashboard.

Each front answers errors in its own callers' shape: the native envelope `{error: {type, message, param}}`,
OpenAI's `{error: {message, type, param, code}}`, Anthropic's `{type: "error", error: {type, message}}`, the
adapter's `{error, context, timestamp}`. When keys are configured, send one as `Authorization: Bearer <key>` or
`x-api-key`. Every response carries `x-request-id` and `x-rhetor-overhead-ms`.

WebSockets (not described here): `/ws` and `/` speak the flat tekton-llm-client protocol (REGISTER, GENERATE,
CHAT, STREAM, CHAT_STREAM, CANCEL, PING) and the LLM Adapter's envelope (LLM_REQUEST, CHAT_REQUEST, REGISTER,
STATUS) on the same socket.
"""


def operations() -> list[Op]:
    return [op for module in MODULES for op in module.OPS]


def _models(ops: Iterable[Op]) -> list[type[BaseModel]]:
    seen: dict[type[BaseModel], None] = {}
    seen[RouteNotFound] = None
    for op in ops:
        if op.body is not None:
            seen[op.body] = None
        for r in op.responses.values():
            seen.update(dict.fromkeys(r.models + (r.frames.models if r.frames else ())))
    return list(seen)


def _schema_of(models: tuple[type[BaseModel], ...], refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    return refs[models[0]] if len(models) == 1 else {"anyOf": [refs[m] for m in models]}


def _event_schema(frames: Frames, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    """One server-sent event: `data` is JSON (of the frame models), or `[DONE]` where the stream ends so."""
    data: dict[str, Any] = {"type": "string", "contentMediaType": "application/json",
                            "contentSchema": _schema_of(frames.models, refs)}
    if frames.done:
        data = {"anyOf": [{"const": "[DONE]"}, data]}
    return {"type": "object", "description": frames.description, "required": ["data"],
            "properties": {"event": {"type": "string"}, "data": data, "id": {"type": "string"}}}


def _response(r: Resp, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": r.description}
    content: dict[str, Any] = {}
    if r.models:
        content[r.media] = {"schema": _schema_of(r.models, refs)}
    elif r.schema is not None:
        content[r.media] = {"schema": dict(r.schema)}
    content.update({media: dict(spec) for media, spec in r.also.items()})
    if r.frames is not None:
        content[SSE] = {"schema": _event_schema(r.frames, refs)}
    if content:
        out["content"] = content
    if r.headers:
        out["headers"] = {name: {"description": text, "schema": {"type": "string"}} for name, text in r.headers.items()}
    return out


def _parameter(p: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                           "schema": dict(p.schema)}
    if p.description:
        out["description"] = p.description
    return out


def _operation_id(op: Op) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", op.path)
    return op.method.lower() + (slug if op.path == "/" or not op.path.endswith("/") else slug.rstrip("_") + "_index")


def _operation(op: Op, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    params = list(op.params)
    declared = {p.name for p in params if p.where == "path"}
    params += [Param(name, "path", required=True) for name in re.findall(r"\{(\w+)\}", op.path) if name not in declared]
    responses = dict(op.responses)
    if "{" in op.path:  # a parameter the route's pattern refuses (a '/' in an id, a newline) is the router's 404
        found = responses.get(404)
        if found is None or RouteNotFound not in found.models:
            responses[404] = replace(found, models=(*found.models, RouteNotFound)) if found is not None else \
                Resp("No such route for this parameter", (RouteNotFound,))
    out: dict[str, Any] = {"operationId": _operation_id(op), "summary": op.summary, "tags": [op.tag],
                           "responses": {str(k): _response(r, refs) for k, r in responses.items()}}
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = [_parameter(p) for p in params]
    if op.body is not None:
        out["requestBody"] = {"required": op.body_required, "content": {"application/json": {"schema": refs[op.body]}}}
    if not op.security:
        out["security"] = [{}]
    return out


def build(app: FastAPI | None = None) -> dict[str, Any]:
    """The whole document: FastAPI's own (path operations, if any) with every declared route merged in."""
    from rhetor import __version__

    ops = operations()
    if app is not None:  # describe what this app serves (a declaration whose route is absent: see unserved())
        served = set(http_routes(app.routes))
        ops = [op for op in ops if (op.method, op.path) in served]
    keyed, defs = models_json_schema([(m, "validation") for m in _models(ops)], ref_template=REF)
    refs: dict[type[BaseModel], dict[str, Any]] = {m: schema for (m, _mode), schema in keyed.items()}  # type: ignore[misc]
    base = get_openapi(title="Rhetor", version=__version__, routes=app.routes if app is not None else [])
    paths: dict[str, dict[str, Any]] = dict(base.get("paths", {}))
    for op in ops:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    schemas = {**base.get("components", {}).get("schemas", {}), **defs.get("$defs", {})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Rhetor", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A Rhetor key (RHETOR_API_KEYS, a virtual "
                       "key, or RHETOR_ADMIN_KEY for the admin routes)"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
        "security": [{}, {"bearer": []}, {"apiKey": []}],  # optional: needed only when keys are configured
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in ops)],
    }


def http_routes(routes: Iterable[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every HTTP route, included routers and mounts too; WebSockets are left out."""
    for route in routes:
        if isinstance(route, Route):
            path = _CONVERTER.sub(r"{\1}", prefix + route.path)
            for method in sorted(route.methods or ()):
                if method in METHODS:
                    yield method, path
        elif isinstance(route, Mount):
            yield from http_routes(route.routes, prefix + route.path)
        elif hasattr(route, "original_router"):  # FastAPI's include_router()
            yield from http_routes(route.original_router.routes, prefix)


def undescribed(app: FastAPI, doc: dict[str, Any] | None = None) -> list[str]:
    """`METHOD path` of each route the document does not describe (empty when it is complete)."""
    paths = (doc or app.openapi())["paths"]
    return [f"{m} {p}" for m, p in http_routes(app.routes) if m.lower() not in paths.get(p, {})]


def unserved(app: FastAPI) -> list[str]:
    """`METHOD path` of each declared operation no route of `app` serves (a stale or early declaration)."""
    served = set(http_routes(app.routes))
    return [f"{op.method} {op.path}" for op in operations() if (op.method, op.path) not in served]


__all__ = ["build", "http_routes", "operations", "undescribed", "unserved"]
