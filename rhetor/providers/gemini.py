"""The Google Gemini provider: Rhetor's normalized requests over the Gemini API spoken natively —
POST {base}/v1/models/{model}:generateContent, :streamGenerateContent?alt=sse and :countTokens (v1: the API
version the official google-genai SDK speaks by default).

Translation is pure module-level functions (`build_payload`, `parse_response`, `StreamState`), tested without a
network; Gemini dicts never leave this module. The system prompt goes in `systemInstruction`, tools as
`functionDeclarations`, tool calls come back as `functionCall` parts and tool results go as `functionResponse`
parts; `usageMetadata` becomes Usage (thinking tokens count as output, cached content as cached input); finish
and safety reasons map onto the normalized ones, a blocked prompt (`promptFeedback.blockReason`) is a
`content_filter` answer. Images in: the normalized types carry no images yet, so none are sent. Knows nothing
of routing, fallback, contexts or Rhetor's fronts. The key travels only in `x-goog-api-key` and is scrubbed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import orjson

from rhetor.catalog import load_catalog
from rhetor.errors import (
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from rhetor.providers.base import Availability
from rhetor.providers.http import HttpUpstream
from rhetor.providers.listing import Listing, fetch_gemini, from_catalogue
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
    ToolChoice,
    Usage,
)

PROVIDER = "gemini"
API = "/v1/models/"
FINISH_REASONS: dict[str, FinishReason] = {
    "STOP": "stop", "FINISH_REASON_UNSPECIFIED": "stop", "OTHER": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter", "RECITATION": "content_filter", "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter", "IMAGE_SAFETY": "content_filter",
    "LANGUAGE": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error", "UNEXPECTED_TOOL_CALL": "error", "TOO_MANY_TOOL_CALLS": "error",
}
# google.rpc status -> HTTP status, for an error object arriving inside a 200 stream
RPC_STATUS: dict[str, int] = {
    "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 429, "CANCELLED": 499, "INTERNAL": 500, "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
PASSTHROUGH_EXTRA = {"top_k": "topK", "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty"}


# ---------------------------------------------------------------- request translation (pure)


def _response_object(m: Message) -> dict[str, Any]:
    """A tool result as the object `functionResponse.response` must be: a JSON object result as-is, anything
    else wrapped (`error` for a failed call, `result` otherwise)."""
    try:
        value = orjson.loads(m.content) if m.content else None
    except orjson.JSONDecodeError:
        value = m.content
    if isinstance(value, dict) and not m.is_error:
        return value
    return {"error" if m.is_error else "result": value if value is not None else m.content}


def _args(call: ToolCall) -> dict[str, Any]:
    try:
        value = orjson.loads(call.arguments or "{}")
    except orjson.JSONDecodeError:
        raise InvalidRequestError(f"tool call {call.id!r} has arguments that are not JSON", param="messages") from None
    return value if isinstance(value, dict) else {"value": value}


def contents(messages: list[Message]) -> tuple[list[dict[str, Any]], list[str]]:
    """`contents` turns (user/model, same-role neighbours merged) and the inline system texts lifted out."""
    names: dict[str, str] = {}  # tool call id -> function name (functionResponse is matched by name)
    turns: list[dict[str, Any]] = []
    systems: list[str] = []
    for m in messages:
        if m.role == "system":
            if m.content:
                systems.append(m.content)
            continue
        parts: list[dict[str, Any]] = []
        if m.role == "tool":
            name = m.name or names.get(m.tool_call_id or "", "") or (m.tool_call_id or "tool")
            response: dict[str, Any] = {"name": name, "response": _response_object(m)}
            if m.tool_call_id:
                response["id"] = m.tool_call_id
            parts.append({"functionResponse": response})
        else:
            if m.content:
                parts.append({"text": m.content})
            for call in m.tool_calls or []:
                names[call.id] = call.name
                parts.append({"functionCall": {"id": call.id, "name": call.name, "args": _args(call)}})
        if not parts:
            continue
        role = "model" if m.role == "assistant" else "user"
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": role, "parts": parts})
    if not turns:
        raise InvalidRequestError("the conversation has no non-empty user or assistant message", param="messages")
    return turns, systems


def tool_config(choice: ToolChoice) -> dict[str, Any]:
    mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[choice.mode]
    config: dict[str, Any] = {"mode": mode}
    if choice.mode == "tool" and choice.name:
        config["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": config}


def build_payload(request: ChatRequest) -> dict[str, Any]:
    """The GenerateContentRequest body for `request` (the model goes in the URL)."""
    turns, inline = contents(request.messages)
    payload: dict[str, Any] = {"contents": turns}
    systems = ([request.system] if request.system else []) + inline
    if systems:
        payload["systemInstruction"] = {"parts": [{"text": "\n\n".join(systems)}]}
    gen: dict[str, Any] = {}
    for key, wire in (("temperature", "temperature"), ("top_p", "topP"), ("max_tokens", "maxOutputTokens"),
                      ("seed", "seed")):
        if getattr(request, key) is not None:
            gen[wire] = getattr(request, key)
    if request.stop:
        gen["stopSequences"] = list(request.stop)
    for key, wire in PASSTHROUGH_EXTRA.items():
        if key in request.extra:
            gen[wire] = request.extra[key]
    fmt = request.response_format or {}
    if fmt.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        spec = fmt.get("json_schema")
        if isinstance(spec, dict) and isinstance(spec.get("schema"), dict):
            gen["responseJsonSchema"] = spec["schema"]
    if gen:
        payload["generationConfig"] = gen
    if request.tools:
        decls = []
        for t in request.tools:
            decl: dict[str, Any] = {"name": t.name, "parametersJsonSchema": t.parameters}
            if t.description:
                decl["description"] = t.description
            decls.append(decl)
        payload["tools"] = [{"functionDeclarations": decls}]
        if request.tool_choice is not None:
            payload["toolConfig"] = tool_config(request.tool_choice)
    return payload


# ---------------------------------------------------------------- response translation (pure)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def parse_usage(meta: Any) -> Usage:
    """`usageMetadata`: promptTokenCount includes cached content; thinking tokens are billed as output."""
    if not isinstance(meta, dict):
        return Usage()
    thoughts = _int(meta.get("thoughtsTokenCount"))
    return Usage(_int(meta.get("promptTokenCount")) + _int(meta.get("toolUsePromptTokenCount")),
                 _int(meta.get("candidatesTokenCount")) + thoughts,
                 cached_input_tokens=_int(meta.get("cachedContentTokenCount")), reasoning_tokens=thoughts)


def error_from(err: Any, model: str = "") -> UpstreamStatusError:
    """The error for a google.rpc `error` object inside a 200 answer or stream."""
    err = err if isinstance(err, dict) else {"message": str(err)}
    code, status = err.get("code"), str(err.get("status") or "")
    http = code if isinstance(code, int) and 400 <= code <= 599 else RPC_STATUS.get(status, 500)
    return UpstreamStatusError(f"gemini error ({http} {status}): {err.get('message') or status or 'unknown'}",
                               status=http, provider=PROVIDER, model=model, upstream_type=status or None)


class Chunk:
    """What one GenerateContentResponse says, normalized: text, tool calls, finish reason, usage, model."""

    __slots__ = ("calls", "finish", "model", "text", "usage")

    def __init__(self, data: Any, model: str, first_call: int = 0) -> None:
        if not isinstance(data, dict):
            raise UpstreamProtocolError("gemini answered with a non-object body", provider=PROVIDER, model=model)
        if data.get("error"):
            raise error_from(data["error"], model)
        self.model = str(data.get("modelVersion") or model)
        self.usage = parse_usage(data["usageMetadata"]) if isinstance(data.get("usageMetadata"), dict) else None
        self.text = ""
        self.calls: list[ToolCall] = []
        self.finish: FinishReason | None = None
        feedback = data.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self.finish = "content_filter"  # the prompt was blocked: no candidates at all
        candidates = data.get("candidates")
        first = candidates[0] if isinstance(candidates, list) and candidates else None
        if not isinstance(first, dict):
            return
        content = first.get("content")
        raw_parts = content.get("parts") if isinstance(content, dict) else None
        parts = [p for p in raw_parts if isinstance(p, dict)] if isinstance(raw_parts, list) else []
        # thought summaries (`thought: true`) are the model's reasoning, not its answer
        self.text = "".join(str(p["text"]) for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))
        for p in parts:
            fc = p.get("functionCall")
            if isinstance(fc, dict) and isinstance(fc.get("name"), str):
                index = first_call + len(self.calls)
                self.calls.append(ToolCall(str(fc.get("id") or f"call_{index}"), fc["name"],
                                           orjson.dumps(fc.get("args") if isinstance(fc.get("args"), dict)
                                                        else {}).decode()))
        reason = first.get("finishReason")
        if isinstance(reason, str) and reason:
            self.finish = "tool_calls" if self.calls and reason == "STOP" else FINISH_REASONS.get(reason, "stop")


def parse_response(data: Any, model: str = "") -> ChatResponse:
    chunk = Chunk(data, model)
    if chunk.finish is None and not chunk.text and not chunk.calls:
        raise UpstreamProtocolError("gemini answered with no candidates and no promptFeedback",
                                    provider=PROVIDER, model=model)
    return ChatResponse(content=chunk.text, model=chunk.model, provider=PROVIDER,
                        finish_reason=chunk.finish or ("tool_calls" if chunk.calls else "stop"),
                        usage=chunk.usage or Usage(), tool_calls=chunk.calls)


class StreamState:
    """Folds `streamGenerateContent?alt=sse` lines into normalized events. Gemini has no terminator event:
    the stream may end once a chunk carried a finishReason (or the prompt was blocked)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.finish: FinishReason | None = None
        self.usage: Usage | None = None
        self.calls = 0
        self.pending: list[ToolCallDelta] = []

    @property
    def finished(self) -> bool:
        return self.finish is not None

    def feed(self, line: str) -> TextDelta | None:
        if not line.startswith("data:"):
            return None
        try:
            data: Any = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("gemini sent an unparsable stream chunk", provider=PROVIDER,
                                        model=self.model) from None
        chunk = Chunk(data, self.model, self.calls)
        self.model = chunk.model
        self.usage = chunk.usage or self.usage  # usageMetadata is cumulative: the last one wins
        for call in chunk.calls:  # Gemini sends each call whole
            self.pending.append(ToolCallDelta(self.calls, call.id, call.name, call.arguments))
            self.calls += 1
        if chunk.finish is not None:
            self.finish = chunk.finish
        return TextDelta(chunk.text) if chunk.text else None

    def end(self) -> StreamEnd:
        if self.finish is None:
            raise UpstreamProtocolError("gemini stream ended without a finishReason", provider=PROVIDER,
                                        model=self.model)
        finish: FinishReason = "tool_calls" if self.calls and self.finish == "stop" else self.finish
        return StreamEnd(finish, self.usage or Usage(), self.model)


# ---------------------------------------------------------------- the provider


class GeminiProvider:
    name = PROVIDER
    default_model = "gemini-3.8-flash"  # the catalogue's default_model wins (rhetor/catalog/catalog.json)

    def __init__(self, settings: Settings) -> None:
        self._catalog = load_catalog(settings.catalog_file)
        self.default_model = self._catalog.default_model(PROVIDER, self.default_model)
        self._key = settings.gemini_api_key.get_secret_value() if settings.gemini_api_key else ""
        self._http = HttpUpstream(PROVIDER, settings.gemini_base_url,
                                  {"x-goog-api-key": self._key, "accept": "application/json"},
                                  timeout_s=settings.upstream_timeout_s,
                                  connect_timeout_s=settings.connect_timeout_s, secret=self._key)
        self._listing = from_catalogue(self._http, fetch_gemini, self._catalog, PROVIDER, settings,
                                       disabled="" if self._key else "GEMINI_API_KEY (or GOOGLE_API_KEY) not set")

    def _path(self, model: str, method: str) -> str:
        self._require_key(model)
        return f"{API}{quote(model.removeprefix('models/'), safe='.-_')}:{method}"

    def _require_key(self, model: str) -> None:
        if not self._key:
            raise ProviderUnavailableError("GEMINI_API_KEY (or GOOGLE_API_KEY) not set", provider=PROVIDER,
                                           model=model)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        data = await self._http.request_json("POST", self._path(request.model, "generateContent"),
                                             build_payload(request), model=request.model, timeout_s=request.timeout_s)
        try:
            return parse_response(data, request.model)
        except ProviderError as exc:
            raise self._http.scrub(exc) from None

    def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        return self._http.events(self._path(request.model, "streamGenerateContent") + "?alt=sse",
                                 build_payload(request), StreamState(request.model), model=request.model,
                                 timeout_s=request.timeout_s)

    async def count_tokens(self, request: ChatRequest) -> int:
        """The vendor's own count (POST :countTokens) of what `request` would send, system and tools included."""
        body = {"generateContentRequest": {"model": f"models/{request.model}", **build_payload(request)}}
        data = await self._http.request_json("POST", self._path(request.model, "countTokens"), body,
                                             model=request.model, timeout_s=request.timeout_s)
        total = data.get("totalTokens") if isinstance(data, dict) else None
        if not isinstance(total, int):
            raise UpstreamProtocolError("gemini countTokens answered without totalTokens", provider=PROVIDER,
                                        model=request.model)
        return total

    async def models(self) -> list[str]:
        return self._catalog.models(PROVIDER)

    async def listed_models(self) -> Listing:
        """GET /v1/models (all pages; the models that generateContent), cached (rhetor.providers.listing); the
        catalogue without a key or when it fails."""
        return await self._listing.get()

    async def available(self) -> Availability:
        if self._key:
            return Availability(True, "GEMINI_API_KEY set")
        return Availability(False, "GEMINI_API_KEY (or GOOGLE_API_KEY) not set")

    def context_window(self, model: str) -> int:
        return self._catalog.context_window(PROVIDER, model)

    async def aclose(self) -> None:
        await self._http.aclose()


__all__ = ["Chunk", "GeminiProvider", "StreamState", "build_payload", "contents", "error_from", "parse_response",
           "parse_usage", "tool_config"]
