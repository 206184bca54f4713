"""The vocabulary of Rhetor's OpenAPI declarations: an operation (`Op`), a response (`Resp`), a parameter
(`Param`), the error shapes of each front, and the response sets every front shares.

The fronts' routes are plain Starlette routes (for speed), so FastAPI cannot describe them; each module of this
package declares its route family with these types, next to nothing else, and rhetor.api.openapi.builder turns
them into the document. Knows pydantic and the wire shapes; nothing of the gateway, handlers or providers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

JSON = "application/json"
SSE = "text/event-stream"


class Open(BaseModel):
    """A response object: the fields listed are promised; more may come (clients ignore what they don't know)."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class Frames:
    """A server-sent event stream: each event's `data` is the JSON of one of `models` (several → anyOf), or the
    `[DONE]` sentinel when `done`. OpenAPI 3.1 has a text/event-stream `schema` describe one event."""

    description: str
    models: tuple[type[BaseModel], ...]
    done: bool = False


@dataclass(frozen=True)
class Resp:
    """One response: its description and body schema(s) (several → anyOf), by media type."""

    description: str
    models: tuple[type[BaseModel], ...] = ()
    media: str = JSON
    schema: Mapping[str, Any] | None = None  # a literal schema instead of models (text bodies)
    also: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # more media types: literal schemas
    headers: Mapping[str, str] = field(default_factory=dict)  # response header name -> description
    frames: Frames | None = None  # the same status may answer as an event stream


def resp(description: str, *models: type[BaseModel], media: str = JSON, headers: Mapping[str, str] | None = None,
         sse: Frames | None = None) -> Resp:
    """A JSON response; with `sse`, the same status may answer as an event stream."""
    return Resp(description, models, media, headers=headers or {}, frames=sse)


def stream(frames: Frames, headers: Mapping[str, str] | None = None) -> Resp:
    """An event stream only."""
    return Resp(frames.description, (), SSE, headers=headers or {}, frames=frames)


def text(description: str, media: str, schema: Mapping[str, Any] | None = None) -> Resp:
    return Resp(description, (), media, schema=schema or {"type": "string"})


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["query", "path", "header"] = "query"
    description: str = ""
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True)
class Op:
    """One HTTP operation as the wire sees it."""

    method: str
    path: str  # OpenAPI form: /api/v1/contexts/{context_id}
    summary: str
    tag: str
    responses: Mapping[int | str, Resp]
    body: type[BaseModel] | None = None
    body_required: bool = True
    params: tuple[Param, ...] = ()
    description: str = ""
    security: bool = True  # False: served without a key even when keys are configured


# -- error shapes ----------------------------------------------------------------------------------------------

class NativeErrorDetail(Open):
    type: str
    message: str
    param: str | None = None


class NativeError(Open):
    """The native envelope (native, templates, contexts, memory, usage, budgets, keys, health)."""

    error: NativeErrorDetail


class OpenAIErrorDetail(Open):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class OpenAIError(Open):
    """OpenAI's error body: what the official OpenAI SDKs parse."""

    error: OpenAIErrorDetail


class AnthropicErrorDetail(Open):
    type: str
    message: str


class AnthropicError(Open):
    """Anthropic's error body: what the official Anthropic SDKs parse."""

    type: Literal["error"]
    error: AnthropicErrorDetail


class LegacyError(Open):
    """The LLM Adapter's error: HTTP 200 for a provider failure (contracts §1), a 4xx for a bad request."""

    error: str
    error_type: str | None = None
    context: str | None = None
    timestamp: str | None = None


class RouteNotFound(Open):
    """Starlette's answer when a path parameter does not fit the route (e.g. an id with a '/')."""

    detail: str


Shape = tuple[type[BaseModel], ...]
NATIVE: Shape = (NativeError,)
OPENAI: Shape = (OpenAIError,)
ANTHROPIC: Shape = (AnthropicError,)

WHY = {400: "Bad request: the message names the field", 401: "A key is needed (keys are configured)",
       403: "The caller's key may not use this route, provider or model", 404: "Not found",
       409: "Conflict", 413: "Request body too large (RHETOR_MAX_BODY_BYTES)",
       422: "Invalid body: the message names the field", 429: "Rate limit or budget exceeded",
       502: "Every upstream target failed", 503: "Unavailable (no provider, ledger off, busy)",
       504: "The upstream timed out"}


def errors(shape: Shape, *statuses: int, not_found_route: bool = False) -> dict[int | str, Resp]:
    """Error responses in one front's shape; 401/413/429 always apply (key check, body cap, limits)."""
    out: dict[int | str, Resp] = {}
    for status in sorted({*statuses, 401, 413, 429}):
        models = shape + ((RouteNotFound,) if status == 404 and not_found_route else ())
        out[status] = Resp(WHY.get(status, "Error"), models)
    return out


def upstream_errors(shape: Shape) -> dict[int | str, Resp]:
    """A proxied call: any status an upstream answered with may come back, in the front's shape."""
    return {"default": Resp("An error, in this front's shape (an upstream's own status when every failed attempt "
                            "agreed on one)", shape)}


class Deleted(Open):
    deleted: bool


__all__ = ["ANTHROPIC", "JSON", "NATIVE", "OPENAI", "SSE", "AnthropicError", "Deleted", "Frames", "LegacyError",
           "NativeError", "Op", "Open", "OpenAIError", "Param", "Resp", "RouteNotFound", "errors", "resp",
           "stream", "text", "upstream_errors"]
