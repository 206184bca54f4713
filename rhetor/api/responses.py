"""JSON responses and error mapping for the native API: orjson bodies, the one error envelope
`{error: {type, message, ...}}`, and validation errors that name the field. Knows nothing of providers.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.responses import Response

from rhetor.errors import RhetorError

log = logging.getLogger("rhetor.api")


class EncodedResponse(Response):
    """A JSON answer whose headers come encoded (a list of byte pairs, in the order Starlette would send them),
    sparing Starlette's per-response lower-casing, encoding and scanning of a headers dict (`init_headers`: ~4%
    of an `oa` request's profile, benchmarks/instructions.py --profile). Sent by Response.__call__ as any other."""

    media_type = "application/json"

    def __init__(self, body: bytes, headers: list[tuple[bytes, bytes]], status_code: int = 200) -> None:
        self.status_code, self.background, self.body = status_code, None, body
        headers.append((b"content-length", str(len(body)).encode()))
        headers.append((b"content-type", b"application/json"))
        self.raw_headers = headers


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if headers is None and status == 200:  # the two headers Starlette makes, without its init_headers
        return EncodedResponse(orjson.dumps(data), [])
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_message(errors: list[Any]) -> tuple[str, str]:
    """(message naming each bad field, the first field) from pydantic error dicts."""
    described = [f"{field_path(e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in errors]
    first = field_path(errors[0].get("loc", ())) if errors else "body"
    return "; ".join(described) or "invalid request", first


def error_body(err: RhetorError) -> dict[str, Any]:
    return {"error": err.to_dict()}


def invalid(errors: list[Any]) -> Response:
    message, param = validation_message(errors)
    return json_response({"error": {"type": "invalid_request_error", "message": message, "param": param}}, 422)


async def rhetor_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RhetorError)
    if exc.status >= 500:
        log.warning("request %s failed: %s", request.scope.get("state", {}).get("request_id"), exc.message)
    return json_response(error_body(exc), exc.status)


async def validation_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, (RequestValidationError, ValidationError))
    return invalid(list(exc.errors()))


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    rid = request.scope.get("state", {}).get("request_id")
    log.exception("unexpected error in request %s", rid)
    return json_response({"error": {"type": "internal_error", "message": f"internal error (request {rid})"}}, 500)


def parse_json(body: bytes) -> Any:
    """Parse a request body; malformed JSON becomes a 422 naming the position, never a 500."""
    if not body:
        raise RequestValidationError([{"loc": ("body",), "msg": "request body is empty; a JSON object is required",
                                       "type": "missing"}])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": f"malformed JSON: {exc}",
                                       "type": "json_invalid"}]) from None


__all__ = [
    "EncodedResponse",
    "error_body",
    "field_path",
    "invalid",
    "json_response",
    "parse_json",
    "rhetor_error_handler",
    "unexpected_error_handler",
    "validation_error_handler",
    "validation_message",
]
