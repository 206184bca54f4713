"""OpenAPI declarations of the OpenAI-compatible front: /v1/chat/completions, /v1/completions, /v1/models,
/v1/embeddings and the Responses API (/v1/responses and its stored-response routes). Errors are OpenAI's body in
the upstream's own status where one applies (rhetor.api.compat.errors). Request bodies are the handlers' own models.
Declarations only.
`/v1/models` is shared with the Anthropic SDK: with `anthropic-version` it answers Anthropic's list shape.
"""

from __future__ import annotations

from typing import Any

from rhetor.api.openai.chat import ChatCompletionBody
from rhetor.api.openai.completions import CompletionBody
from rhetor.api.openai.embeddings import EmbeddingsBody
from rhetor.api.openai.wire import CreateBody
from rhetor.api.openapi.common import OPENAI, Frames, Op, Open, OpenAIError, Param, Resp, errors, resp, upstream_errors

TAG = "openai"
RHETOR_HEADERS = {"x-rhetor-provider": "The provider that answered", "x-rhetor-model": "The model that answered",
                  "x-rhetor-fallback": "true when a fallback target answered",
                  "x-rhetor-simulated": "true when the simulated provider answered"}


class CompletionMessage(Open):
    role: str
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Choice(Open):
    index: int
    message: CompletionMessage
    finish_reason: str | None = None


class CompletionUsage(Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None


class TextChoice(Open):
    text: str
    index: int
    finish_reason: str | None = None


class TextCompletion(Open):
    """A `text_completion` (the legacy completions API), whole or as one stream chunk."""

    id: str
    object: str
    created: int
    model: str
    choices: list[TextChoice]
    usage: CompletionUsage | None = None


class OpenAIModel(Open):
    id: str
    object: str
    created: int
    owned_by: str


class AnthropicModel(Open):
    type: str
    id: str
    display_name: str
    created_at: str


class ModelList(Open):
    """OpenAI's `{object: "list", data}`; with `anthropic-version`, Anthropic's `{data, has_more, first_id,
    last_id}`."""

    data: list[OpenAIModel | AnthropicModel]
    object: str | None = None
    has_more: bool | None = None
    first_id: str | None = None
    last_id: str | None = None


class Embedding(Open):
    object: str
    index: int
    embedding: list[float] | str


class EmbeddingUsage(Open):
    prompt_tokens: int
    total_tokens: int


class Embeddings(Open):
    object: str
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class ResponseObject(Open):
    """A Responses API `response` object (as OpenAI's SDKs parse it)."""

    id: str
    object: str
    created_at: int
    status: str
    model: str
    output: list[dict[str, Any]]
    usage: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class ResponseDeleted(Open):
    id: str
    object: str
    deleted: bool


class InputItems(Open):
    object: str
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool


_HEADER_IN = (Param("x-rhetor-context-id", "header", "Continue (and record into) this stored context"),
              Param("x-rhetor-component", "header", "The calling component (attribution, prompts, budgets)"),
              Param("x-rhetor-task", "header", "The task type for rhetor/<task> routing"))
_CALL: dict[int | str, Resp] = {**upstream_errors(OPENAI), **errors(OPENAI, 400, 403, 404, 502, 503, 504)}
_RID = Param("response_id", "path", "A stored response id", required=True)
_STORED = errors(OPENAI, 400, 404)


class ChatChunk(Open):
    """A `chat.completion.chunk` (a failure after the stream began is an OpenAI error body instead)."""

    id: str
    object: str
    created: int
    model: str
    choices: list[dict[str, Any]]


class ResponseEvent(Open):
    """One Responses API event (`response.created`, `response.output_text.delta`, …, `response.completed`)."""

    type: str
    sequence_number: int | None = None


def _json_or_sse(description: str, model: type[Open], events: Frames) -> Resp:
    return resp(description, model, headers=RHETOR_HEADERS, sse=events)


OPS = [
    Op("POST", "/v1/chat/completions", "Chat completions (OpenAI): any provider behind it", TAG,
       {200: _json_or_sse("A chat.completion (or chat.completion.chunk events with stream: true)", ChatCompletion,
                          Frames("`data: <chat.completion.chunk>` frames, then `data: [DONE]`",
                                 (ChatChunk, OpenAIError), done=True)), **_CALL},
       body=ChatCompletionBody, params=_HEADER_IN),
    Op("POST", "/v1/completions", "Legacy text completions (OpenAI), as a chat turn on any provider", TAG,
       {200: _json_or_sse("A text_completion (or its chunks with stream: true)", TextCompletion,
                          Frames("`data: <text_completion chunk>` frames, then `data: [DONE]`",
                                 (TextCompletion, OpenAIError), done=True)), **_CALL},
       body=CompletionBody, params=_HEADER_IN),
    Op("GET", "/v1/models", "Every routable model as provider/model, the aliases and rhetor/<task> routes", TAG,
       {200: resp("Models", ModelList), **errors(OPENAI)},
       params=(Param("anthropic-version", "header", "Present: Anthropic's list shape"),)),
    Op("GET", "/v1/models/{model_id}", "One model", TAG,
       {200: resp("The model", OpenAIModel, AnthropicModel), **errors(OPENAI, 404)},
       params=(Param("model_id", "path", "provider/model (path-escaped), an alias or rhetor/<task>",
                     required=True), Param("anthropic-version", "header", "Present: Anthropic's shapes"))),
    Op("POST", "/v1/embeddings", "Embeddings (OpenAI shape; float or base64)", TAG,
       {200: resp("Vectors", Embeddings), **_CALL}, body=EmbeddingsBody),
    Op("POST", "/v1/responses", "The Responses API on any provider (JSON, or SSE with stream: true)", "responses",
       {200: _json_or_sse("A response object", ResponseObject, Frames("The Responses API's event sequence "
                          "(response.created … response.completed)", (ResponseEvent,))), **_CALL},
       body=CreateBody, params=_HEADER_IN[:2]),
    Op("GET", "/v1/responses/{response_id}", "A stored response", "responses",
       {200: resp("The response", ResponseObject), **_STORED},
       params=(_RID, Param("stream", schema={"type": "boolean"}, description="Not supported: false only"))),
    Op("DELETE", "/v1/responses/{response_id}", "Delete a stored response", "responses",
       {200: resp("Deleted", ResponseDeleted), **_STORED}, params=(_RID,)),
    Op("POST", "/v1/responses/{response_id}/cancel", "Cancel: Rhetor runs no background responses, so a stored "
       "one is already finished (400)", "responses", {**_STORED}, params=(_RID,)),
    Op("GET", "/v1/responses/{response_id}/input_items", "The input items of a stored response", "responses",
       {200: resp("Items", InputItems), **_STORED},
       params=(_RID, Param("order", schema={"type": "string", "enum": ["asc", "desc"]}),
               Param("limit", schema={"type": "integer", "minimum": 1, "maximum": 100}), Param("after"))),
]

__all__ = ["OPS", "RHETOR_HEADERS"]
