"""The Anthropic provider: Rhetor's normalized requests over the Messages API (POST /v1/messages), spoken
directly with one pooled httpx client, plain and as SSE.

Translation to and from the wire is pure module-level functions (`build_payload`, `parse_response`,
`SSEParser`, `StreamState`), tested without a network; Anthropic dicts never leave this module. Knows
nothing of routing, fallback, contexts or how Rhetor frames streams toward its callers. The API key is
sent only in the `x-api-key` header and is scrubbed from every error message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

import orjson

from rhetor.catalog import load_catalog
from rhetor.errors import (
    ProviderUnavailableError,
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from rhetor.providers.anthropic_tools import (
    LEADING_USER_PLACEHOLDER,
    add_request_knobs,
    merge_messages,
    parse_tool_uses,
)
from rhetor.providers.base import Availability
from rhetor.providers.fidelity import effort_budget
from rhetor.providers.http import HttpUpstream
from rhetor.providers.listing import Listing, fetch_anthropic, from_catalogue
from rhetor.settings import Settings
from rhetor.types import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    ProviderEvent,
    ReasoningDelta,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    Usage,
)

PROVIDER = "anthropic"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
# Vendor-specific knobs a caller may pass through `ChatRequest.extra`; anything else there is ignored.
PASSTHROUGH_EXTRA = ("top_k", "metadata")

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic error type -> the HTTP status it is documented with (for errors arriving as an SSE event).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


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


# ---------------------------------------------------------------- response translation (pure)


def finish_reason(stop_reason: Any) -> FinishReason:
    return STOP_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _obj(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def usage_of(usage: dict[str, Any]) -> Usage:
    """Anthropic counts cache reads and writes apart from `input_tokens`; the normalized Usage counts them in it."""
    read, write = _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens"))
    return Usage(_int(usage.get("input_tokens")) + read + write, _int(usage.get("output_tokens")), read, write)


def parse_response(data: Any, model: str = "") -> ChatResponse:
    """A ChatResponse from a Messages API `message` object; UpstreamProtocolError if it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamProtocolError("anthropic answered with an unexpected body (no content list)",
                                    provider=PROVIDER, model=model)
    blocks = data["content"]
    texts: list[str] = []
    thoughts: list[str] = []
    for b in blocks:  # one loop, not two generators (with the positional ChatResponse: an 805k -> 797k)
        if isinstance(b, dict):
            kind = b.get("type")
            if kind == "text":
                texts.append(str(b.get("text", "")))
            elif kind == "thinking":
                thoughts.append(str(b.get("thinking", "")))
    usage = _obj(data, "usage")
    # positionally, in ChatResponse's field order (keywords: ~0.5k instructions each, callgrind)
    return ChatResponse(
        "".join(texts),  # content
        str(data.get("model") or model),
        PROVIDER,
        finish_reason(data.get("stop_reason")),
        usage_of(usage),
        False,  # simulated
        parse_tool_uses(blocks),
        data["stop_sequence"] if isinstance(data.get("stop_sequence"), str) else None,
        "".join(thoughts),  # reasoning
    )


def error_event(data: dict[str, Any], model: str = "") -> UpstreamStatusError:
    """The error for an `event: error` arriving inside a 200 stream, with the status its type is known by."""
    err = _obj(data, "error")
    etype = str(err.get("type") or "api_error")
    message = str(err.get("message") or etype)
    return UpstreamStatusError(f"anthropic stream error {etype}: {message}",
                               status=ERROR_STATUS.get(etype, 500), provider=PROVIDER, model=model,
                               upstream_type=etype)


def sse_event(lines: Iterable[str]) -> tuple[str, str] | None:
    """One server-sent event from its lines (without line endings; the blank line that ends it excluded): (event,
    data) per the SSE spec (comments ignored, multi-line data joined with newlines); None if it carries neither."""
    event = ""
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
    if not data and not event:
        return None
    return event or "message", "\n".join(data)


def sse_events(lines: list[bytes], pending: list[bytes]) -> list[tuple[bytes, tuple[str, str]]]:
    """The events that `lines` (a stream's next lines, as received) complete, each as (its lines joined, as a
    relay sends them, (event, data)). Lines of an unfinished event stay in `pending`, and so do those of an event
    of comments only (they go out with the next one). One decode and one parse per event, not per line."""
    out: list[tuple[bytes, tuple[str, str]]] = []
    for line in lines:
        if line:
            pending.append(line)
            continue
        if not pending:
            continue
        text = b"\n".join(pending)
        sse = sse_event(text.decode("utf-8", "replace").split("\n"))
        if sse is not None:
            out.append((text, sse))
            pending.clear()
    return out


class SSEParser:
    """Server-sent events, one line at a time (lines without their terminator): yields (event, data) on
    each blank line (`sse_event` reads the lines)."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def feed(self, line: str) -> tuple[str, str] | None:
        if line:
            if not line.startswith(":"):  # comments are never kept
                self._lines.append(line)
            return None
        lines, self._lines = self._lines, []
        return sse_event(lines) if lines else None


class StreamState:
    """Folds the Messages stream's events into normalized events: TextDelta per text_delta, one StreamEnd
    at message_stop. Raises UpstreamStatusError on an error event, UpstreamProtocolError on bad JSON."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read = 0
        self.cache_write = 0
        self.stop_reason: Any = None
        self.stop_sequence: str | None = None
        self.done = False
        self.tool_index: dict[int, int] = {}  # content block index -> normalized tool-call index

    def handle(self, event: str, raw: str) -> ProviderEvent | None:
        try:
            data: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(f"anthropic sent an unparsable {event!r} event", provider=PROVIDER,
                                        model=self.model) from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"anthropic sent a non-object {event!r} event", provider=PROVIDER,
                                        model=self.model)
        kind = data.get("type") or event
        if kind == "content_block_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta" and delta.get("text"):
                return TextDelta(str(delta["text"]))
            if isinstance(delta, dict) and delta.get("type") == "thinking_delta" and delta.get("thinking"):
                return ReasoningDelta(str(delta["thinking"]))
            if isinstance(delta, dict) and delta.get("type") == "input_json_delta" and delta.get("partial_json"):
                tool = self.tool_index.get(_int(data.get("index")))
                if tool is not None:
                    return ToolCallDelta(tool, arguments=str(delta["partial_json"]))
        elif kind == "content_block_start":
            block = _obj(data, "content_block")
            if block.get("type") == "tool_use":
                tool = self.tool_index[_int(data.get("index"))] = len(self.tool_index)
                return ToolCallDelta(tool, str(block.get("id") or f"toolu_{tool}"), str(block.get("name") or ""))
        elif kind == "message_start":
            message = _obj(data, "message")
            self.model = str(message.get("model") or self.model)
            usage = _obj(message, "usage")
            self.input_tokens = _int(usage.get("input_tokens"))
            self.output_tokens = _int(usage.get("output_tokens"))
            self.cache_read = _int(usage.get("cache_read_input_tokens"))
            self.cache_write = _int(usage.get("cache_creation_input_tokens"))
        elif kind == "message_delta":
            delta = _obj(data, "delta")
            self.stop_reason = delta.get("stop_reason", self.stop_reason)
            if isinstance(delta.get("stop_sequence"), str):
                self.stop_sequence = delta["stop_sequence"]
            usage = _obj(data, "usage")
            # message_delta usage is cumulative; input_tokens appears there only in newer API versions
            self.output_tokens = _int(usage.get("output_tokens")) or self.output_tokens
            self.input_tokens = _int(usage.get("input_tokens")) or self.input_tokens
        elif kind == "message_stop":
            self.done = True
            totals = usage_of({"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                               "cache_read_input_tokens": self.cache_read,
                               "cache_creation_input_tokens": self.cache_write})
            return StreamEnd(finish_reason(self.stop_reason), totals, self.model, stop_sequence=self.stop_sequence)
        elif kind == "error":
            raise error_event(data, self.model)
        # ping, content_block_stop and event types added later are ignored, as Anthropic advises
        return None


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

__all__ = [
    "API_VERSION",
    "DEFAULT_MAX_TOKENS",
    "LEADING_USER_PLACEHOLDER",
    "AnthropicProvider",
    "SSEParser",
    "StreamState",
    "build_payload",
    "error_event",
    "finish_reason",
    "parse_response",
    "sse_event",
    "sse_events",
]
