"""OpenAPI declarations of the native API (rhetor.api.native.routes, the tekton-llm-client contract and the 2025
rhetor_client): providers, models, chat, chat/stream, generate, generate_stream, model assignments and the
context inspection routes. The request bodies are the handlers' own pydantic models; the replies are declared
here. Knows the wire shapes only, never the handlers' code.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rhetor.api.native.schemas import ChatBody
from rhetor.api.openapi.common import NATIVE, Frames, Op, Open, Param, errors, resp, stream

TAG = "native"
CHAT_ERRORS = (400, 403, 404, 422, 502, 503, 504)


class Usage(Open):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class Attempt(Open):
    """One target tried: `outcome` is ok, error or skipped; `error_type` and `message` say why not."""

    provider: str
    model: str
    outcome: str
    elapsed_ms: float | None = None
    status: int | None = None
    error_type: str | None = None
    message: str | None = None


class Recalled(Open):
    id: int | str | None = None
    role: str | None = None
    score: float | None = None


class ChatResult(Open):
    """A finished answer. `content`, `message` and `response` carry the same text for each generation of client."""

    content: str
    message: str
    response: str
    model: str
    provider: str
    context_id: str | None = None
    finish_reason: str | None = None
    usage: Usage
    fallback: bool
    simulated: bool
    attempts: list[Attempt]
    finished: bool
    timestamp: str
    context_scope: str | None = Field(None, description="connection or stateless, for a shared context id")
    retrieval: str | None = Field(None, description="semantic or lexical, when older turns came back")
    retrieved: list[Recalled] | None = None
    cached: bool | None = None
    budget_warnings: list[Any] | None = None


class StreamFrame(Open):
    """One `data:` frame of a native stream; the last has `done: true` (and `error` when the stream failed);
    then `data: [DONE]`."""

    chunk: str
    context_id: str | None = None
    model: str | None = None
    provider: str | None = None
    timestamp: str
    done: bool
    finish_reason: str | None = None
    usage: Usage | None = None
    error: str | None = None
    error_type: str | None = None


class GenerateRequest(ChatBody):
    """`POST /api/v1/generate`: the native body, plus the adapter-era and 2025 fields (`prompt` is the message,
    `provider` the provider id, `stop` goes to options)."""

    prompt: str | None = None
    provider: str | None = None
    stop: str | list[str] | None = None


class ModelRef(Open):
    id: str
    name: str | None = None


class ProviderStatus(Open):
    name: str
    available: bool
    reason: str | None = None
    default_model: str | None = None
    models: list[ModelRef]
    breakers: dict[str, Any] = Field(default_factory=dict)
    cooling_down: dict[str, Any] = Field(default_factory=dict)


class Providers(Open):
    providers: dict[str, ProviderStatus]
    default_provider: str
    default_model: str
    current_provider: str
    current_model: str


class ModelEntry(Open):
    id: str
    provider: str
    model: str
    available: bool


class Models(Open):
    models: list[ModelEntry]
    default_provider: str
    default_model: str


class Assignments(Open):
    """Component → capability → model id (or `use_default`), else `defaults.<capability>`."""

    defaults: dict[str, str]
    capabilities: list[str]
    components: dict[str, Any]
    default_targets: dict[str, Any] | None = None


class ContextSummary(Open):
    context_id: str
    created_at: str | None = None
    updated_at: str | None = None
    message_count: int
    component: str | None = None


class Contexts(Open):
    contexts: list[ContextSummary]
    total: int


class StoredMessage(Open):
    id: int | str
    role: str
    content: str
    timestamp: str | None = None
    metadata: dict[str, Any] | None = None


class ContextPage(ContextSummary):
    """A context with one page of its messages; with `?format=r1` (or a trailing `/export`) the R1 JSON file."""

    offset: int | None = None
    limit: int | None = None
    total: int | None = None
    messages: list[StoredMessage] = Field(default_factory=list)


class ContextDeleted(Open):
    deleted: bool
    context_id: str


_SSE = Frames("Server-sent events: `data: <StreamFrame>` frames (the last with done: true), then `data: [DONE]`",
              (StreamFrame,), done=True)
_CHAT = {200: resp("The answer (or, with streaming: true, an event stream)", ChatResult, sse=_SSE),
         **errors(NATIVE, *CHAT_ERRORS)}
_STREAM = {200: stream(_SSE), **errors(NATIVE, *CHAT_ERRORS)}
_CID = Param("context_id", "path", "A context id (path-escaped; a trailing /export asks for the R1 export)",
             required=True)
_PAGE = (Param("offset", schema={"type": "integer", "minimum": 0}),
         Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 1000}),
         Param("format", description="r1: the R1 export of the context", schema={"type": "string", "enum": ["r1"]}))

OPS = [
    Op("GET", "/api/v1/providers", "Providers, their models and availability", TAG,
       {200: resp("Providers", Providers), **errors(NATIVE)}),
    Op("GET", "/api/v1/models", "Every provider/model Rhetor can route to", TAG,
       {200: resp("Models", Models), **errors(NATIVE)}),
    Op("POST", "/api/v1/chat", "Chat (tekton-llm-client): one answer, or a stream with streaming: true", TAG,
       _CHAT, body=ChatBody),
    Op("POST", "/api/v1/chat/stream", "Chat as server-sent events", TAG, _STREAM, body=ChatBody),
    Op("POST", "/api/v1/generate", "Generate: the adapter-era and 2025 rhetor_client bodies", TAG, _CHAT,
       body=GenerateRequest),
    Op("POST", "/api/v1/generate_stream", "Generate as server-sent events", TAG, _STREAM, body=GenerateRequest),
    Op("GET", "/api/models/assignments", "Model assignments per component and capability (2025 rhetor_client)",
       TAG, {200: resp("Assignments", Assignments), **errors(NATIVE)}),
    Op("GET", "/api/v1/contexts", "Stored contexts", "contexts", {200: resp("Contexts", Contexts), **errors(NATIVE)}),
    Op("GET", "/api/v1/contexts/{context_id}", "A context and a page of its messages", "contexts",
       {200: resp("The context", ContextPage), **errors(NATIVE, 400, 404, not_found_route=True)},
       params=(_CID, *_PAGE)),
    Op("DELETE", "/api/v1/contexts/{context_id}", "Delete a context", "contexts",
       {200: resp("Deleted", ContextDeleted), **errors(NATIVE, 400, 404, not_found_route=True)}, params=(_CID,)),
]

__all__ = ["OPS", "Attempt", "ChatResult", "StreamFrame", "Usage"]
