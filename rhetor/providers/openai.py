"""The OpenAI provider: Rhetor's normalized requests over Chat Completions (POST {base}/chat/completions),
plain and as SSE, for api.openai.com and any OpenAI-compatible server (vLLM, llama.cpp server, LM Studio).

Translation to the wire is pure module-level functions (`build_payload`), and from it in
rhetor.providers.openai_reply (`parse_response`, `StreamState`), tested without a network; OpenAI dicts never
leave these modules.
Knows nothing of routing, fallback, contexts or how Rhetor frames streams toward its callers. The API key is
sent only in the Authorization header and is scrubbed from every error message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

from rhetor.catalog import load_catalog
from rhetor.errors import (
    ProviderError,
    ProviderUnavailableError,
    UpstreamProtocolError,
)
from rhetor.providers.base import Availability, Embeddings
from rhetor.providers.http import HttpUpstream
from rhetor.providers.listing import Listing, fetch_openai, from_catalogue
from rhetor.providers.openai_reply import StreamState, parse_response, parse_usage
from rhetor.providers.openai_tools import add_request_knobs, message_dict
from rhetor.settings import Settings
from rhetor.types import (
    ChatRequest,
    ChatResponse,
    ProviderEvent,
)

PROVIDER = "openai"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
# Reasoning models reject `max_tokens` and want `max_completion_tokens`; compatible servers (vLLM, llama.cpp)
# know `max_tokens` best, so every other model name gets that.
REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5")

# ---------------------------------------------------------------- request translation (pure)


def max_tokens_key(model: str) -> str:
    return "max_completion_tokens" if model.startswith(REASONING_PREFIXES) else "max_tokens"


def build_payload(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    """The Chat Completions body for `request`; optional knobs are sent only when set."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(message_dict(m) for m in request.messages)
    payload: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.top_p is not None:
        payload["top_p"] = request.top_p
    if request.max_tokens is not None:
        payload[max_tokens_key(request.model)] = request.max_tokens
    if request.stop:
        payload["stop"] = list(request.stop)
    add_request_knobs(payload, request)
    if stream:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    return payload


def parse_embeddings(data: Any, model: str, count: int) -> Embeddings:
    """Embeddings from a `list` of `embedding` objects, ordered by `index`; UpstreamProtocolError otherwise."""
    items = data.get("data") if isinstance(data, dict) else None
    vectors: list[list[float] | None] = [None] * count
    for pos, item in enumerate(items if isinstance(items, list) else []):
        index = item.get("index", pos) if isinstance(item, dict) else None
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(index, int) and 0 <= index < count and isinstance(vector, list):
            vectors[index] = [float(x) for x in vector]
    if any(v is None for v in vectors):
        raise UpstreamProtocolError(f"openai answered {len(items) if isinstance(items, list) else 0} embeddings "
                                    f"for {count} inputs", provider=PROVIDER, model=model)
    usage = parse_usage(data.get("usage")) if isinstance(data, dict) else None
    return Embeddings([v for v in vectors if v is not None], str(data.get("model") or model),
                      usage.input_tokens if usage else 0)


# what available() says (frozen, so built once)
KEYED, UNKEYED = Availability(True, "OPENAI_API_KEY set"), Availability(False, "OPENAI_API_KEY not set")


# ---------------------------------------------------------------- the provider


class OpenAIProvider:
    name = PROVIDER
    wire = "openai"  # the API it speaks: a request from the OpenAI front passes through (rhetor.providers.fidelity)
    default_model = "gpt-5.4"  # the catalogue's default_model wins (rhetor/catalog/catalog.json)

    def __init__(self, settings: Settings) -> None:
        self._catalog = load_catalog(settings.catalog_file)  # models, context windows, the default: data
        self.default_model = self._catalog.default_model(PROVIDER, self.default_model)
        self._key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
        self._http = HttpUpstream(PROVIDER, settings.openai_base_url,
                                  {"authorization": f"Bearer {self._key}", "accept": "application/json"},
                                  timeout_s=settings.upstream_timeout_s,
                                  connect_timeout_s=settings.connect_timeout_s, secret=self._key)
        self._listing = from_catalogue(self._http, fetch_openai, self._catalog, PROVIDER, settings,
                                       disabled="" if self._key else "OPENAI_API_KEY not set")

    def _require_key(self, model: str) -> None:
        if not self._key:
            raise ProviderUnavailableError("OPENAI_API_KEY not set", provider=PROVIDER, model=model)

    def complete(self, request: ChatRequest) -> Coroutine[Any, Any, ChatResponse]:
        """The answer to `request` (a plain function returning the call's coroutine: no layer of its own)."""
        self._require_key(request.model)
        pt = request.passthrough
        if pt is not None and pt.api == "openai" and pt.forward:  # same vendor: the caller's body, relayed answer
            return openai_passthrough.complete(self._http, request, pt)
        return self._complete(request)

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        model = request.model
        data = await self._http.request_json("POST", "/chat/completions", build_payload(request), model=model,
                                             timeout_s=request.timeout_s)
        try:
            return parse_response(data, model)
        except ProviderError as exc:
            raise self._http.scrub(exc) from None

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        self._require_key(request.model)
        pt = request.passthrough
        if pt is not None and pt.api == "openai" and pt.forward:  # same vendor: the caller's body, relayed events
            return openai_passthrough.stream(self._http, request, pt)
        return self._http.events("/chat/completions", build_payload(request, stream=True),
                                 StreamState(request.model), model=request.model, timeout_s=request.timeout_s)

    async def models(self) -> list[str]:
        return self._catalog.models(PROVIDER)

    async def listed_models(self) -> Listing:
        """GET /models, cached (rhetor.providers.listing); the catalogue without a key or when it fails."""
        return await self._listing.get()

    def embedding_models(self) -> list[str]:
        return self._catalog.models(PROVIDER, kind="embedding") or [DEFAULT_EMBEDDING_MODEL]

    async def embed(self, texts: list[str], model: str | None = None) -> Embeddings:
        """POST /embeddings; vectors come back in input order (the answer's `index` decides)."""
        name = model or self.embedding_models()[0]
        self._require_key(name)
        data = await self._http.request_json("POST", "/embeddings", {"model": name, "input": texts,
                                                                     "encoding_format": "float"}, model=name)
        return parse_embeddings(data, name, len(texts))

    async def embed_tokens(self, tokens: list[list[int]], model: str | None = None) -> Embeddings:
        """POST /embeddings with token ids as input (OpenAI takes them as they are)."""
        name = model or self.embedding_models()[0]
        self._require_key(name)
        data = await self._http.request_json("POST", "/embeddings", {"model": name, "input": tokens,
                                                                     "encoding_format": "float"}, model=name)
        return parse_embeddings(data, name, len(tokens))

    async def available(self) -> Availability:
        return KEYED if self._key else UNKEYED

    def context_window(self, model: str) -> int:
        return self._catalog.context_window(PROVIDER, model)

    async def aclose(self) -> None:
        await self._http.aclose()


# The same-vendor pass-through builds on this module's parsers, so it is imported last (Python resolves the cycle
# either way round); imported on each call instead, it cost ~5k instructions a request.
from rhetor.providers import openai_passthrough  # noqa: E402

__all__ = ["OpenAIProvider", "build_payload", "max_tokens_key", "parse_embeddings"]
