"""OpenAPI declarations of the Anthropic-compatible front: POST /v1/messages (JSON, or the Messages event
stream) and POST /v1/messages/count_tokens. Errors are Anthropic's body, in the upstream's own status where one
applies (rhetor.api.compat.errors). Request bodies are the handler's own models. Declarations only.
"""

from __future__ import annotations

from typing import Any

from rhetor.api.anthropic.messages import CountTokensBody, MessagesBody
from rhetor.api.openapi.common import ANTHROPIC, Frames, Op, Open, Param, errors, resp, upstream_errors
from rhetor.api.openapi.openai import RHETOR_HEADERS

TAG = "anthropic"


class MessageUsage(Open):
    input_tokens: int
    output_tokens: int


class MessageObject(Open):
    id: str
    type: str
    role: str
    model: str
    content: list[dict[str, Any]]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: MessageUsage


class TokenCount(Open):
    """`input_tokens`; `estimated: true` when Rhetor estimated offline rather than a vendor counting."""

    input_tokens: int
    estimated: bool | None = None
    method: str | None = None


class MessageEvent(Open):
    """One Messages stream event's data: message_start, content_block_*, message_delta, message_stop, ping or
    error (Anthropic's error body)."""

    type: str


_EVENTS = Frames("`event: <type>` / `data: {type, …}`: message_start, content_block_start/delta/stop, "
                 "message_delta, message_stop (ping between; `error` when the stream fails after it began)",
                 (MessageEvent,))
_HEADERS = (Param("anthropic-version", "header", "Sent by the Anthropic SDKs"),
            Param("x-rhetor-context-id", "header", "Continue (and record into) this stored context"),
            Param("x-rhetor-component", "header", "The calling component"),
            Param("x-rhetor-task", "header", "The task type for rhetor/<task> routing"))

OPS = [
    Op("POST", "/v1/messages", "Messages (Anthropic): any provider behind it", TAG,
       {200: resp("A message (or the Messages event stream with stream: true)", MessageObject,
                  headers=RHETOR_HEADERS, sse=_EVENTS),
        **upstream_errors(ANTHROPIC), **errors(ANTHROPIC, 400, 403, 404, 502, 503, 504)},
       body=MessagesBody, params=_HEADERS),
    Op("POST", "/v1/messages/count_tokens", "Count input tokens (a vendor's count, or an offline estimate)", TAG,
       {200: resp("The count", TokenCount), **upstream_errors(ANTHROPIC), **errors(ANTHROPIC, 400, 404)},
       body=CountTokensBody, params=_HEADERS[:1]),
]

__all__ = ["OPS"]
