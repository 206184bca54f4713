"""The Ollama provider: Rhetor's normalized requests over Ollama's native chat API (POST /api/chat), plain
JSON and NDJSON streams, with availability and the model list read from GET /api/tags.

Translation to and from the wire is pure module-level functions (`build_payload`, `parse_response`,
`StreamState`, `model_names`), tested without a network; Ollama dicts never leave this module. Knows nothing
of routing, fallback, contexts or how Rhetor frames streams toward its callers.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from rhetor.errors import InvalidRequestError, ProviderError, UpstreamProtocolError, UpstreamStatusError
from rhetor.providers.base import Availability, AvailabilityCache, Embeddings
from rhetor.providers.http import HttpUpstream
from rhetor.providers.listing import Listing, LiveModels, fetch_ollama
from rhetor.settings import Settings
from rhetor.types import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    Message,
    ProviderEvent,
    StreamEnd,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

PROVIDER = "ollama"
CONTEXT_WINDOW = 8192
DEFAULT_EMBEDDING_MODEL = "nomic-embed-text"
PROBE_TIMEOUT_S = 1.0  # availability must stay cheap: a local daemon answers /api/tags in milliseconds
STREAM_ERROR_STATUS = 500  # an error line inside a 200 stream: the server failed mid-generation


# ---------------------------------------------------------------- request translation (pure)


def build_payload(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    """The /api/chat body. `stream` is always explicit because Ollama streams when it is absent."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(_message(m) for m in request.messages)
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.stop:
        options["stop"] = list(request.stop)
    if request.seed is not None:
        options["seed"] = request.seed
    payload: dict[str, Any] = {"model": request.model, "messages": messages, "stream": stream}
    if options:
        payload["options"] = options
    if request.tools and (request.tool_choice is None or request.tool_choice.mode != "none"):
        # Ollama has no tool_choice: "none" is honoured by not offering the tools, the rest is "auto"
        payload["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                              "parameters": t.parameters}} for t in request.tools]
    fmt = request.response_format or {}
    if fmt.get("type") == "json_object":
        payload["format"] = "json"
    elif fmt.get("type") == "json_schema" and isinstance(fmt.get("json_schema"), dict):
        payload["format"] = fmt["json_schema"].get("schema") or "json"
    return payload


def _message(m: Message) -> dict[str, Any]:
    """Ollama wants tool-call arguments as objects and names a tool result by `tool_name`."""
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [{"function": {"name": c.name, "arguments": _json_object(c.arguments)}}
                             for c in m.tool_calls]
    if m.role == "tool" and m.name:
        out["tool_name"] = m.name
    if m.images:  # Ollama takes base64 images only
        for image in m.images:
            if image.data is None:
                raise InvalidRequestError(f"{image.where or 'an image'}: ollama takes base64 images only, not URLs "
                                          "(send a data: URL)", param=image.where or "messages")
        out["images"] = [image.data for image in m.images]
    return out


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def parse_tool_calls(data: dict[str, Any], start: int = 0) -> list[ToolCall]:
    """`message.tool_calls` (whole calls, arguments as objects; ids only in newer Ollama versions)."""
    message = data.get("message")
    raw = message.get("tool_calls") if isinstance(message, dict) else None
    calls: list[ToolCall] = []
    for item in raw if isinstance(raw, list) else []:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        args = function.get("arguments")
        n = start + len(calls)
        call_id = str(item.get("id") or f"call_{n}_{function['name']}")
        calls.append(ToolCall(call_id, function["name"],
                              orjson.dumps(args if isinstance(args, dict) else {}).decode()))
    return calls


# ---------------------------------------------------------------- response translation (pure)


def finish_reason(done_reason: Any) -> FinishReason:
    return "length" if done_reason == "length" else "stop"


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _usage(data: dict[str, Any]) -> Usage:
    return Usage(_int(data.get("prompt_eval_count")), _int(data.get("eval_count")))


def _content(data: dict[str, Any]) -> str:
    message = data.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


def error_line(message: Any, model: str = "") -> UpstreamStatusError:
    """The error for an `{"error": "..."}` object arriving with a 200 status (mid-stream, or a bare body)."""
    return UpstreamStatusError(f"ollama error: {message}", status=STREAM_ERROR_STATUS, provider=PROVIDER,
                               model=model)


def parse_response(data: Any, model: str = "") -> ChatResponse:
    """A ChatResponse from a non-streamed /api/chat answer; UpstreamProtocolError if it is not one."""
    if isinstance(data, dict) and data.get("error"):
        raise error_line(data["error"], model)
    if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
        raise UpstreamProtocolError("ollama answered with an unexpected body (no message)", provider=PROVIDER,
                                    model=model)
    calls = parse_tool_calls(data)
    return ChatResponse(
        content=_content(data),
        model=str(data.get("model") or model),
        provider=PROVIDER,
        finish_reason="tool_calls" if calls else finish_reason(data.get("done_reason")),
        usage=_usage(data),
        tool_calls=calls,
    )


class StreamState:
    """Folds NDJSON lines of a /api/chat stream into normalized events: a TextDelta per non-empty content;
    `end()` gives the one StreamEnd from the `done: true` line and raises UpstreamProtocolError if that
    line never came."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.final: StreamEnd | None = None
        self.tool_calls = 0
        self.pending: list[ToolCallDelta] = []  # whole tool calls of the last fed line, drained by the caller

    @property
    def finished(self) -> bool:
        return self.final is not None

    def feed(self, line: str) -> TextDelta | None:
        if not line.strip() or self.final is not None:
            return None
        try:
            data: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("ollama sent an unparsable stream line", provider=PROVIDER,
                                        model=self.model) from None
        if not isinstance(data, dict):
            raise UpstreamProtocolError("ollama sent a non-object stream line", provider=PROVIDER,
                                        model=self.model)
        if data.get("error"):
            raise error_line(data["error"], self.model)
        self.model = str(data.get("model") or self.model)
        text = _content(data)  # the done line may carry a last piece of text
        for call in parse_tool_calls(data, self.tool_calls):
            self.pending.append(ToolCallDelta(self.tool_calls, call.id, call.name, call.arguments))
            self.tool_calls += 1
        if data.get("done"):
            reason = "tool_calls" if self.tool_calls else finish_reason(data.get("done_reason"))
            self.final = StreamEnd(reason, _usage(data), self.model)
        return TextDelta(text) if text else None

    def end(self) -> StreamEnd:
        if self.final is None:
            raise UpstreamProtocolError("ollama stream ended without done: true", provider=PROVIDER,
                                        model=self.model)
        return self.final


def model_names(tags: Any) -> list[str]:
    """Model names from a /api/tags body. `name:latest` also answers to bare `name` (Ollama resolves it so),
    so both are listed and a request for the default `llama3` validates against `llama3:latest`."""
    models = tags.get("models") if isinstance(tags, dict) else None
    names: list[str] = []
    for entry in models if isinstance(models, list) else []:
        name = entry.get("name") or entry.get("model") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            continue
        names.append(name)
        if name.endswith(":latest"):
            names.append(name.removesuffix(":latest"))
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------- the provider


class OllamaProvider:
    name = PROVIDER
    default_model = "llama3"

    def __init__(self, settings: Settings) -> None:
        self._ttl = settings.availability_ttl_s
        self._host = settings.ollama_host.rstrip("/")
        self._http = HttpUpstream(PROVIDER, self._host, {"accept": "application/json"},
                                  timeout_s=settings.upstream_timeout_s,
                                  connect_timeout_s=settings.connect_timeout_s)
        self._availability = AvailabilityCache(self._probe, settings.availability_ttl_s)
        self._models: list[str] = []
        self._models_at: float | None = None
        self._listing = LiveModels(self._http, fetch_ollama, self._known, settings)

    async def _known(self) -> list[str]:
        """What a failed listing falls back to: the tags last seen (the catalogue lists no Ollama models)."""
        return list(self._models)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        data = await self._http.request_json("POST", "/api/chat", build_payload(request), model=request.model,
                                             timeout_s=request.timeout_s)
        return parse_response(data, request.model)

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        return self._http.events("/api/chat", build_payload(request, stream=True), StreamState(request.model),
                                 model=request.model, timeout_s=request.timeout_s, accept="application/x-ndjson")

    def embedding_models(self) -> list[str]:
        return list(self._models) or [DEFAULT_EMBEDDING_MODEL]

    async def embed(self, texts: list[str], model: str | None = None) -> Embeddings:
        """POST /api/embed (Ollama >= 0.3): one vector per input, in order."""
        name = model or DEFAULT_EMBEDDING_MODEL
        data = await self._http.request_json("POST", "/api/embed", {"model": name, "input": texts}, model=name)
        if isinstance(data, dict) and data.get("error"):
            raise error_line(data["error"], name)
        vectors = data.get("embeddings") if isinstance(data, dict) else None
        if not isinstance(vectors, list) or len(vectors) != len(texts) or \
                not all(isinstance(v, list) for v in vectors):
            raise UpstreamProtocolError("ollama answered /api/embed without one vector per input",
                                        provider=PROVIDER, model=name)
        return Embeddings([[float(x) for x in v] for v in vectors], str(data.get("model") or name),
                          _int(data.get("prompt_eval_count")))

    async def _tags(self) -> list[str]:
        """Fetch /api/tags (short timeout); refreshes the cached model list. Raises ProviderError."""
        data = await self._http.request_json("GET", "/api/tags", timeout_s=PROBE_TIMEOUT_S)
        self._models = model_names(data)
        self._models_at = time.monotonic()
        return self._models

    async def _probe(self) -> Availability:
        try:
            await self._tags()
        except UpstreamStatusError as exc:
            return Availability(False, f"Ollama at {self._host} answered {exc.upstream_status}")
        except ProviderError:
            return Availability(False, f"Ollama not reachable at {self._host}")
        return Availability(True, f"Ollama reachable at {self._host}")

    async def models(self) -> list[str]:
        if self._models_at is None or time.monotonic() - self._models_at > self._ttl:
            try:
                await self._tags()
            except ProviderError:
                # remember the failure for the TTL too, so a down daemon is not probed on every call
                self._models, self._models_at = [], time.monotonic()
        return list(self._models)

    async def listed_models(self) -> Listing:
        """GET /api/tags, cached (rhetor.providers.listing); the tags last seen when the daemon fails."""
        return await self._listing.get()

    async def available(self) -> Availability:
        return await self._availability.get()

    def context_window(self, model: str) -> int:
        return CONTEXT_WINDOW

    async def aclose(self) -> None:
        await self._http.aclose()


__all__ = [
    "CONTEXT_WINDOW",
    "OllamaProvider",
    "StreamState",
    "build_payload",
    "error_line",
    "finish_reason",
    "model_names",
    "parse_response",
    "parse_tool_calls",
]
