"""The OpenAI front's error shape: `{"error": {"message", "type", "param", "code"}}`, with the `type` the
official SDK expects for each status (so it raises RateLimitError, NotFoundError, ...), declared as the
`ErrorShape` rhetor.api.compat.errors answers with (it decides the status). Knows no gateway, no providers.
"""

from __future__ import annotations

from typing import Any

from rhetor.api.compat.errors import ErrorShape

OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
                422: "invalid_request_error", 429: "rate_limit_error"}


def openai_type(status: int) -> str:
    return OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def openai_error(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": openai_type(status), "param": param, "code": code}}


def _body(status: int, message: str, code: str | None, param: str | None) -> dict[str, Any]:
    return openai_error(status, message, code=code, param=param)


OPENAI = ErrorShape("openai", _body)  # what rhetor.api.compat.errors answers this front's failures with

__all__ = ["OPENAI", "OPENAI_TYPES", "openai_error", "openai_type"]
