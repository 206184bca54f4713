"""Unknown routes and wrong methods under /v1/* answer in the calling SDK's error shape, so the official SDKs
raise their own NotFoundError / APIStatusError instead of failing to parse `{"detail": "Not Found"}`.

OpenAI: 404 `{"error": {"message", "type": "invalid_request_error", "param": null, "code": "unknown_url"}}`,
405 the same with code `method_not_allowed` and an `Allow` header. Anthropic (a request carrying
`anthropic-version`, as its SDKs always send, or aimed at /v1/messages or /v1/complete):
`{"type": "error", "error": {"type": "not_found_error" | "invalid_request_error", "message"}}`. Everything
outside /v1/ keeps FastAPI's default answer. Knows the compat error shapes; nothing of routes or providers.
"""

from __future__ import annotations

import orjson
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from rhetor.api.anthropic.errors import anthropic_error
from rhetor.api.openai.errors import openai_error

_ANTHROPIC_PATHS = ("/v1/messages", "/v1/complete")


def _anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers or request.url.path.startswith(_ANTHROPIC_PATHS)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if not path.startswith("/v1/") or exc.status_code not in (404, 405):
        return await http_exception_handler(request, exc)
    method = request.method
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message, code = f"Invalid URL ({method} {path}): no such route", "unknown_url"
    else:
        allowed = headers.get("Allow") or headers.get("allow") or ""
        message = f"Method {method} is not allowed on {path}" + (f"; allowed: {allowed}" if allowed else "")
        code = "method_not_allowed"
    body = (anthropic_error(exc.status_code, message) if _anthropic(request)
            else openai_error(exc.status_code, message, code=code))
    return Response(orjson.dumps(body), status_code=exc.status_code, media_type="application/json", headers=headers)


__all__ = ["http_error_handler"]
