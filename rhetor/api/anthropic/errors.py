"""The Anthropic front's error shape: `{"type": "error", "error": {"type", "message"}}`, with the `type` the
official SDK expects for each status (so it raises RateLimitError, NotFoundError, ...), declared as the
`ErrorShape` rhetor.api.compat.errors answers with (it decides the status). Knows no gateway, no providers.
"""

from __future__ import annotations

from typing import Any

from rhetor.api.compat.errors import ErrorShape

ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                   403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                   422: "invalid_request_error", 429: "rate_limit_error", 504: "timeout_error",
                   529: "overloaded_error"}


def anthropic_type(status: int) -> str:
    return ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": anthropic_type(status), "message": message}}


def _body(status: int, message: str, _code: str | None, _param: str | None) -> dict[str, Any]:
    return anthropic_error(status, message)  # Anthropic's body carries neither a code nor a param


ANTHROPIC = ErrorShape("anthropic", _body)  # what rhetor.api.compat.errors answers this front's failures with

__all__ = ["ANTHROPIC", "ANTHROPIC_TYPES", "anthropic_error", "anthropic_type"]
