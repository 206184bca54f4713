"""The Anthropic provider: Rhetor's normalized requests over the Messages API (POST /v1/messages), spoken
directly with one pooled httpx client, plain and as SSE.

Translation to the wire is pure module-level functions (`build_payload`), and from it in
rhetor.providers.anthropic_reply (`parse_response`, `SSEParser`, `StreamState`), tested without a network;
Anthropic dicts never leave these modules. Knows
nothing of routing, fallback, contexts or how Rhetor frames streams toward its callers. The API key is
sent only in the `x-api-key` header and is scrubbed from every error message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any

from rhetor.catalog import load_catalog
from rhetor.errors import (
    ProviderUnavailableError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from rhetor.providers.anthropic_reply import StreamState, parse_response, sse_events
from rhetor.providers.anthropic_tools import (
    LEADING_USER_PLACEHOLDER,
    add_request_knobs,
    merge_messages,
)
from rhetor.providers.base import Availability
from rhetor.providers.fidelity import effort_budget
from rhetor.providers.http import HttpUpstream
from rhetor.providers.listing import Listing, fetch_anthropic, from_catalogue
from rhetor.settings import Settings
from rhetor.types import (
    ChatRequest,
    ChatResponse,
    ProviderEvent,
    ReasoningDelta,
    StreamEnd,
)

PROVIDER = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# Vendor-specific knobs a caller may pass through `ChatRequest.extra`; anything else there is ignored.
PASSTHROUGH_EXTRA = ("top_k", "metadata")

# ---------------------------------------------------------------- request translation (pure)


def build_payload(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    """The Messages API body for `request`."""
    turns, inline_systems = merge_messages(request)
    payload: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens if request.max_tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": turns,
    }
    systems = ([request.system] if request.system else []) + inline_systems
    if systems:
        payload["system"] = "\n\n".join(systems)
    if request.temperature is not None:
        payload["temperature"] = request.temperature
    if request.top_p is not None:
        payload["top_p"] = request.top_p
    if request.stop:
        payload["stop_sequences"] = list(request.stop)
    for key in PASSTHROUGH_EXTRA:
        if key in request.extra:
            payload[key] = request.extra[key]
    add_request_knobs(payload, request)
    if request.reasoning is not None:  # OpenAI's reasoning_effort as a thinking budget (rhetor.providers.fidelity)
        r = request.reasoning
        budget = r.budget_tokens if r.budget_tokens is not None else effort_budget(r.effort or "medium")
        if payload["max_tokens"] <= budget:  # Anthropic wants room for the answer beyond the budget
            payload["max_tokens"] = budget + payload["max_tokens"]
        payload["thinking"] = {"type": "enabled", "budget_tokens": budget}
    if request.service_tier is not None:
        payload["service_tier"] = request.service_tier
    if stream:
        payload["stream"] = True
    return payload


# what available() says (frozen, so built once)
KEYED, UNKEYED = Availability(True, "ANTHROPIC_API_KEY set"), Availability(False, "ANTHROPIC_API_KEY not set")


# ---------------------------------------------------------------- the provider


class AnthropicProvider:
    name = PROVIDER
    wire = "anthropic"  # the API it speaks: a request from the Anthropic front passes through (providers.fidelity)
    default_model = "claude-sonnet-5-5"  # the catalogue's default_model wins (rhetor/catalog/catalog.json)

    def __init__(self, settings: Settings) -> None:
        self._catalog = load_catalog(settings.catalog_file)  # models, context windows, the default: data
        self.default_model = self._catalog.default_model(PROVIDER, self.default_model)
        self._key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else ""
        self._http = HttpUpstream(PROVIDER, settings.anthropic_base_url,
                                  {"x-api-key": self._key, "anthropic-version": API_VERSION,
                                   "accept": "application/json"},
                                  timeout_s=settings.upstream_timeout_s,
                                  connect_timeout_s=settings.connect_timeout_s, secret=self._key)
        self._listing = from_catalogue(self._http, fetch_anthropic, self._catalog, PROVIDER, settings,
                                       disabled="" if self._key else "ANTHROPIC_API_KEY not set")

    def _require_key(self, model: str) -> None:
        if not self._key:
            raise ProviderUnavailableError("ANTHROPIC_API_KEY not set", provider=PROVIDER, model=model)

    def complete(self, request: ChatRequest) -> Coroutine[Any, Any, ChatResponse]:
        """The answer to `request` (a plain function returning the call's coroutine: no layer of its own)."""
        self._require_key(request.model)
        pt = request.passthrough
        if pt is not None and pt.api == "anthropic" and pt.forward:  # same vendor: the caller's body, relayed
            return anthropic_passthrough.complete(self._http, request, pt)
        return self._complete(request)

    async def _complete(self, request: ChatRequest) -> ChatResponse:
        data = await self._http.request_json("POST", "/v1/messages", build_payload(request), model=request.model,
                                             timeout_s=request.timeout_s)
        return parse_response(data, request.model)

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        self._require_key(request.model)
        pt = request.passthrough
        if pt is not None and pt.api == "anthropic" and pt.forward:  # same vendor: the caller's body, relayed
            return anthropic_passthrough.stream(self._http, request, pt)
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        model = request.model
        state = StreamState(model)
        pending: list[bytes] = []
        end: StreamEnd | None = None
        # Read to the end of the body even after message_stop, so the connection returns to the pool;
        # closing this generator early closes the upstream response.
        batches = self._http.stream_batches("/v1/messages", build_payload(request, stream=True), model=model,
                                            timeout_s=request.timeout_s)
        try:
            async for lines in batches:
                if end is not None:
                    continue
                for _, sse in sse_events(lines, pending):
                    if end is not None:
                        break
                    event = state.handle(*sse)
                    if isinstance(event, StreamEnd):
                        end = event
                    elif event is not None and (request.passthrough is not None
                                                or not isinstance(event, ReasoningDelta)):
                        yield event  # reasoning only to the fronts that frame it
        except (UpstreamProtocolError, UpstreamConnectError):  # transport failures (timeouts included)
            if end is None:  # a cut after message_stop loses nothing
                raise
        except UpstreamStatusError as exc:
            raise self._http.scrub(exc) from None
        finally:
            await batches.aclose()
        if end is None:
            raise UpstreamProtocolError("anthropic stream ended without message_stop", provider=PROVIDER,
                                        model=model)
        yield end

    async def models(self) -> list[str]:
        return self._catalog.models(PROVIDER)

    async def listed_models(self) -> Listing:
        """GET /v1/models (all pages), cached (rhetor.providers.listing); the catalogue without a key or when
        it fails."""
        return await self._listing.get()

    async def available(self) -> Availability:
        return KEYED if self._key else UNKEYED

    def context_window(self, model: str) -> int:
        return self._catalog.context_window(PROVIDER, model)

    async def aclose(self) -> None:
        await self._http.aclose()


# The same-vendor pass-through builds on this module's parsers, so it is imported last (Python resolves the cycle
# either way round); imported on each call instead, it cost ~5k instructions a request.
from rhetor.providers import anthropic_passthrough  # noqa: E402

__all__ = ["API_VERSION", "DEFAULT_MAX_TOKENS", "LEADING_USER_PLACEHOLDER", "AnthropicProvider", "build_payload"]
