"""Template routes: list/create, read/new version/delete, version history and render, under /api/v1/templates.

Bodies are checked for shape here (a wrong JSON type is a 422 naming the field); everything else — ids,
variable declarations, syntax, rendering — is the store's, and comes back as a 400/404/409 from the one error
tree. Plain Starlette routes like routes.py. No business logic lives here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.responses import invalid, json_response, parse_json
from rhetor.errors import InvalidRequestError
from rhetor.prompts import TemplateStore
from rhetor.prompts.templates import validate_id


class CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    text: str
    variables: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class PutBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    variables: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    activate: bool = True
    active_version: int | None = Field(None, ge=0)


class RenderBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variables: dict[str, Any] | None = None
    version: int | None = Field(None, ge=0)


def store(request: Request) -> TemplateStore:
    templates: TemplateStore = request.app.state.gateway.templates
    return templates


async def _parse(request: Request, model: type[BaseModel], *, empty_ok: bool = False) -> Any:
    raw = await request.body()
    data = parse_json(raw) if raw or not empty_ok else {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return invalid(list(exc.errors()))


def _template_id(request: Request) -> str:
    return validate_id(request.path_params["template_id"])


def _version_param(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidRequestError(f"version must be a non-negative integer, got {raw!r}", param="version")
    return int(raw)


async def list_templates(request: Request) -> Response:
    q = request.query_params
    items = store(request).list(component=q.get("component"), task=q.get("task"))
    return json_response({"templates": items, "total": len(items)})


async def create_template(request: Request) -> Response:
    body = await _parse(request, CreateBody)
    if isinstance(body, Response):
        return body
    s = store(request)
    await s.create(body.id, text=body.text, variables=body.variables, metadata=body.metadata)
    return json_response(s.describe(body.id), 201)


async def get_template(request: Request) -> Response:
    tid, version = _template_id(request), _version_param(request)
    s = store(request)
    if version is None:
        return json_response(s.describe(tid))
    chosen = s.get(tid, version)
    return json_response({**chosen.to_dict(), "active": chosen.version == s.active_version(tid)})


async def put_template(request: Request) -> Response:
    tid = _template_id(request)
    body = await _parse(request, PutBody)
    if isinstance(body, Response):
        return body
    s = store(request)
    existed = s.exists(tid)
    given = body.model_fields_set
    kwargs: dict[str, Any] = {k: getattr(body, k) for k in ("text", "variables", "metadata") if k in given}
    version = await s.put(tid, activate=body.activate, active_version=body.active_version, **kwargs)
    return json_response({**s.describe(tid), "version_written": None if body.active_version is not None
                          else version.version}, 200 if existed else 201)


async def delete_template(request: Request) -> Response:
    return json_response(await store(request).delete(_template_id(request)))


async def template_versions(request: Request) -> Response:
    tid = _template_id(request)
    s = store(request)
    active = s.active_version(tid)
    return json_response({"id": tid, "active_version": active,
                          "versions": [{**v.to_dict(), "active": v.version == active} for v in s.versions(tid)]})


async def render_template(request: Request) -> Response:
    tid = _template_id(request)
    body = await _parse(request, RenderBody, empty_ok=True)
    if isinstance(body, Response):
        return body
    rendered = await store(request).render(tid, body.variables, body.version)
    return json_response({"id": rendered.template_id, "version": rendered.version, "use_as": rendered.use_as,
                          "text": rendered.text})


routes: list[BaseRoute] = [
    Route("/api/v1/templates", list_templates, methods=["GET"]),
    Route("/api/v1/templates", create_template, methods=["POST"]),
    Route("/api/v1/templates/{template_id}/versions", template_versions, methods=["GET"]),
    Route("/api/v1/templates/{template_id}/render", render_template, methods=["POST"]),
    Route("/api/v1/templates/{template_id}", get_template, methods=["GET"]),
    Route("/api/v1/templates/{template_id}", put_template, methods=["PUT"]),
    Route("/api/v1/templates/{template_id}", delete_template, methods=["DELETE"]),
]

__all__ = ["routes"]
