"""The caller-key admin API, guarded by RHETOR_ADMIN_KEY (Bearer or x-api-key): create (the secret is shown once),
list, read, update, revoke and rotate virtual keys. Without RHETOR_ADMIN_KEY set, or without the admin key, every
route answers 401; a malformed definition is a 400 naming the field. `require_admin` guards other admin routes
too (budgets). Plain Starlette routes; knows the access gate, nothing of the gateway or providers.
"""

from __future__ import annotations

import hmac

from fastapi.exceptions import RequestValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.presented import presented_key
from rhetor.api.responses import json_response, parse_json
from rhetor.errors import AuthenticationError, InvalidRequestError, TemplateConflictError, TemplateNotFoundError
from rhetor.governance.access import Access
from rhetor.governance.keys import KeyRecord, KeySpec, digest, parse_spec

ONCE = "store this secret now: Rhetor keeps only its hash and cannot show it again"


def access_of(request: Request) -> Access:
    access: Access = request.app.state.governance.access
    return access


def require_admin(request: Request) -> Access:
    """The access gate, if the request carries RHETOR_ADMIN_KEY; else AuthenticationError (401)."""
    access = access_of(request)
    admin = access.ring.admin_digest
    if admin is None:
        raise AuthenticationError("the admin API is disabled: set RHETOR_ADMIN_KEY on the server and send it as "
                                  "'Authorization: Bearer <admin key>' or 'x-api-key'")
    secret = presented_key(request.scope.get("headers", ()))
    if secret is None or not hmac.compare_digest(digest(secret), admin):
        raise AuthenticationError("this route needs the admin key (RHETOR_ADMIN_KEY) as 'Authorization: Bearer "
                                  "<admin key>' or 'x-api-key'")
    return access


async def _spec(request: Request, *, creating: bool) -> KeySpec:
    try:
        data = parse_json(await request.body())
    except RequestValidationError as exc:
        raise InvalidRequestError(f"body: {exc.errors()[0]['msg']}", param="body") from None
    return parse_spec(data, creating=creating)


def _found(rec: KeyRecord | None, key_id: str) -> KeyRecord:
    if rec is None:
        raise TemplateNotFoundError(f"no key {key_id!r}")
    return rec


async def create_key(request: Request) -> Response:
    access = require_admin(request)
    rec, secret = await access.create(await _spec(request, creating=True))
    return json_response({"key": rec.public(), "secret": secret, "note": ONCE}, 201)


async def list_keys(request: Request) -> Response:
    access = require_admin(request)
    everything = request.query_params.get("include_revoked", "").lower() in ("1", "true", "yes")
    keys = [r.public() for r in await access.store.all() if everything or r.revoked_at is None]
    return json_response({"keys": keys, "total": len(keys)})


async def get_key(request: Request) -> Response:
    access = require_admin(request)
    key_id = request.path_params["key_id"]
    return json_response({"key": _found(await access.store.get(key_id), key_id).public()})


async def update_key(request: Request) -> Response:
    access = require_admin(request)
    key_id = request.path_params["key_id"]
    spec = await _spec(request, creating=False)
    rec = _found(await access.update(key_id, spec), key_id)
    if rec.revoked_at is not None:
        raise TemplateConflictError(f"key {key_id!r} is revoked; create a new one")
    return json_response({"key": rec.public()})


async def revoke_key(request: Request) -> Response:
    access = require_admin(request)
    key_id = request.path_params["key_id"]
    rec = _found(await access.revoke(key_id), key_id)
    return json_response({"revoked": True, "key": rec.public()})


async def rotate_key(request: Request) -> Response:
    access = require_admin(request)
    key_id = request.path_params["key_id"]
    rotated = await access.rotate(key_id)
    if rotated is None:
        rec = _found(await access.store.get(key_id), key_id)
        raise TemplateConflictError(f"key {rec.id!r} is revoked; create a new one")
    rec, secret = rotated
    return json_response({"key": rec.public(), "secret": secret, "note": ONCE})


routes: list[BaseRoute] = [
    Route("/api/v1/keys", create_key, methods=["POST"]),
    Route("/api/v1/keys", list_keys, methods=["GET"]),
    Route("/api/v1/keys/{key_id}", get_key, methods=["GET"]),
    Route("/api/v1/keys/{key_id}", update_key, methods=["PATCH", "PUT"]),
    Route("/api/v1/keys/{key_id}", revoke_key, methods=["DELETE"]),
    Route("/api/v1/keys/{key_id}/rotate", rotate_key, methods=["POST"]),
]

__all__ = ["require_admin", "routes"]
