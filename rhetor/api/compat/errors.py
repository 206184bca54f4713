"""Errors of the OpenAI- and Anthropic-compatible fronts, in each API's own body and status, so each official
SDK raises its own exception class (RateLimitError, NotFoundError, AuthenticationError, ...).

The bodies are each front's own (rhetor.api.openai.errors, rhetor.api.anthropic.errors); this module decides
the status. A run whose targets all failed answers with the upstream's own status when every failed attempt
agrees on one (a pinned model answering 429 is a 429 to the caller), else 502; when every target was skipped
(no key, open breaker) 503. Body validation failures are 400, as both APIs answer them. Handlers are wrapped
route-locally (`compat_endpoint`), so the native API's global handlers are untouched. Knows no providers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from rhetor.api.responses import validation_message
from rhetor.errors import (
    AllTargetsFailedError,
    BudgetExceededError,
    CircuitOpenError,
    InvalidRequestError,
    ProviderUnavailableError,
    RhetorError,
    UpstreamStatusError,
)

log = logging.getLogger("rhetor.api")
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """A front's error body, declared by the front (rhetor.api.openai.errors.OPENAI,
    rhetor.api.anthropic.errors.ANTHROPIC): `body(status, message, code, param)`."""

    name: Literal["openai", "anthropic"]
    body: Callable[[int, str, str | None, str | None], dict[str, Any]]

# Attempts that failed without a status: what the caller is told.
_TYPE_STATUS = {"upstream_timeout": 504, "upstream_unreachable": 502, "upstream_protocol_error": 502}


def attempts_status(attempts: Sequence[dict[str, Any]]) -> int:
    """The status a failed run is reported with (see the module docstring)."""
    failed = [a for a in attempts if a.get("outcome") == "error"]
    if not failed:
        return 503
    statuses = {int(a["status"]) if a.get("status") else _TYPE_STATUS.get(str(a.get("error_type")), 502)
                for a in failed}
    # an upstream refusing Rhetor's own key is not the caller's 401 (their SDK would blame their own key)
    statuses = {502 if s == 401 else s for s in statuses}
    return statuses.pop() if len(statuses) == 1 else 502


def credentials_note(attempts: Sequence[dict[str, Any]]) -> str | None:
    """Which upstreams rejected Rhetor's credentials (401), for the message: the caller's key was fine."""
    rejected = sorted({str(a["provider"]) for a in attempts if a.get("outcome") == "error" and a.get("status") == 401})
    if not rejected:
        return None
    return (f"the upstream rejected Rhetor's credentials for provider {', '.join(rejected)} (upstream 401): "
            "Rhetor's own API key for it is wrong or revoked; the caller's key was accepted")


def status_of(err: RhetorError) -> int:
    if isinstance(err, AllTargetsFailedError):
        return attempts_status(err.attempts)
    if isinstance(err, UpstreamStatusError):
        return err.upstream_status
    if isinstance(err, (ProviderUnavailableError, CircuitOpenError)):
        return 503
    return err.status


def error_response(shape: ErrorShape, err: RhetorError) -> Response:
    status = status_of(err)
    headers: dict[str, str] = {}
    if isinstance(err, AllTargetsFailedError):
        # Rhetor already retried and fell back; the summary of what was tried rides along for debugging.
        headers["x-rhetor-attempts"] = ",".join(f"{a['provider']}/{a['model']}:{a.get('status') or a['outcome']}"
                                                for a in err.attempts)[:1000]
    param = err.param if isinstance(err, InvalidRequestError) else None
    message = err.message
    failed = [a for a in err.attempts if a.get("message")] if isinstance(err, AllTargetsFailedError) else []
    if failed:  # say what the upstream said (keys are already scrubbed from attempt messages)
        message = f"{message}; last error: {failed[-1]['message']}"
    note = credentials_note(err.attempts) if isinstance(err, AllTargetsFailedError) else None
    if note is not None:
        message = f"{note}. {message}"
        headers["x-should-retry"] = "false"  # retrying cannot fix Rhetor's configuration
    body = shape.body(status, message, err.type, param)
    if isinstance(err, BudgetExceededError):
        # OpenAI's own quota refusal is a 429 with code insufficient_quota; the SDKs must not retry it until reset
        headers["x-should-retry"] = "false"
        if shape.name == "openai":
            body["error"].update(type="budget_exceeded", code="insufficient_quota")
        body["error"].update({k: v for k, v in err.figures.items() if k not in body["error"]})
    if status >= 500:
        log.warning("compat request failed (%s): %s", status, err.message)
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def invalid_response(shape: ErrorShape, errors: list[Any]) -> Response:
    message, param = validation_message(errors)
    if shape.name == "anthropic" and param not in message:
        message = f"{param}: {message}"  # Anthropic's body has no `param`: the message names the field
    body = shape.body(400, message, "invalid_value", param)
    return Response(orjson.dumps(body), status_code=400, media_type="application/json")


def compat_endpoint(shape: ErrorShape, handler: Handler) -> Handler:
    """`handler` with every failure answered in `shape`, the front's error format, never the native envelope."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except RhetorError as exc:
            return error_response(shape, exc)
        except (RequestValidationError, ValidationError) as exc:
            return invalid_response(shape, list(exc.errors()))
        except Exception:
            rid = request.scope.get("state", {}).get("request_id")
            log.exception("unexpected error in compat request %s", rid)
            body = shape.body(500, f"internal error (request {rid})", None, None)
            return Response(orjson.dumps(body), status_code=500, media_type="application/json")

    return endpoint


__all__ = ["ErrorShape", "attempts_status", "compat_endpoint", "credentials_note", "error_response", "invalid_response",
           "status_of"]
