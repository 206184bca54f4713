"""The LLM Adapter compatibility shim, HTTP side (contracts §1-2, "Legacy HTTP"): the routes and reply shapes
that Ergon, Terma, Hephaestus and the R1 clients call, served by the same Gateway as the native API.

- `GET /providers` (`/api/providers`): the R1 shape plus `current_provider`/`current_model` and each
  provider's `default_model`. `POST /provider` (`/api/provider`): sets the default provider and model for
  later legacy calls (persisted in `$RHETOR_DATA_DIR/legacy_provider.json`); 400 on an unknown one.
- `POST /message`, `POST /chat` → `{message, model, provider, context, finished, timestamp}`; context id
  defaults to "default"; a bare id (no ':') is also the component, so `ergon`, `agora`, … pick their prompt;
  a shared one (`default`, `terma`, `ergon`, …) keeps no history over HTTP (rhetor.api.context_scope).
  A provider failure answers 200 `{error, context, timestamp}` as R1 did; a bad request is a 4xx.
- `POST /stream`: SSE `event: message` / `data: {chunk, context, model, provider, timestamp, done}`, ending
  with `done: true` and no `[DONE]`.
- `POST /api/v1/generate`, `/api/v1/generate_stream` (Hephaestus' llm_adapter_client and the 2025
  rhetor_client) live with the native routes (rhetor.api.native.routes).
Knows the gateway and the native shapes, nothing of providers' wire formats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import orjson
from pydantic import Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from rhetor.api.attribution import attribute
from rhetor.api.context_scope import annotate, scope_input
from rhetor.api.native.schemas import ChatFields
from rhetor.api.responses import invalid, json_response, parse_json
from rhetor.api.state import gateway
from rhetor.api.streaming import ClosingStreamingResponse
from rhetor.errors import BudgetExceededError, InvalidRequestError, RhetorError, UnknownModelError
from rhetor.gateway import ChatInput, ChatOutcome, StreamSession, now_iso
from rhetor.providers import canonical
from rhetor.types import Message, StreamEnd, StreamError, TextDelta

log = logging.getLogger("rhetor")


class LegacyBody(ChatFields):
    context_id: str = Field("default", min_length=1, max_length=256)  # the legacy default


class LegacyDefaults:
    """The default provider/model chosen with `POST /provider`: in a small JSON file (atomic writes), or with
    RHETOR_DATABASE_URL in PostgreSQL's shared settings, so every replica routes by the same default (each
    re-reads it at most once a second, when a legacy request needs it: `await load()` before `get()`)."""

    REFRESH_S = 1.0

    def __init__(self, path: Path, store: SharedSettings | None = None) -> None:
        self.path = path
        self.store = store
        self._value: tuple[str, str] | None = None
        self._loaded = False
        self._fetched = -1e9
        self._opened = False
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        """Bring the shared value up to date (PostgreSQL only; a no-op for the file)."""
        if self.store is None or time.monotonic() - self._fetched < self.REFRESH_S:
            return
        async with self._lock:
            if time.monotonic() - self._fetched < self.REFRESH_S:
                return
            self._fetched = time.monotonic()  # a failure is retried a second later, not on every request
            try:
                if not self._opened:
                    await self.store.open()
                    self._opened = True
                self._value, self._loaded = _pair(await self.store.get(SETTING)), True
            except Exception as exc:  # PostgreSQL lost: the last value read keeps routing
                log.warning("legacy default provider: cannot read the shared setting (%s); keeping %s", exc,
                            self._value)
                self._loaded = True

    def get(self) -> tuple[str, str] | None:
        if not self._loaded:
            self._loaded = True
            try:
                self._value = _pair(json.loads(self.path.read_text("utf-8")))
            except (OSError, ValueError):
                self._value = None  # absent or unreadable: the routing config decides
        return self._value

    async def set(self, provider: str, model: str) -> None:
        self._value, self._loaded = (provider, model), True
        if self.store is not None:
            await self.load()  # opened
            await self.store.put(SETTING, {"provider": provider, "model": model, "updated_at": now_iso()})
            self._fetched = time.monotonic()
        else:
            await asyncio.to_thread(self._write, provider, model)

    def _write(self, provider: str, model: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"provider": provider, "model": model, "updated_at": now_iso()}), "utf-8")
        tmp.replace(self.path)


SETTING = "legacy_provider"


class SharedSettings(Protocol):
    async def open(self) -> None: ...
    async def get(self, name: str) -> Any: ...
    async def put(self, name: str, value: Any) -> None: ...


def _pair(data: Any) -> tuple[str, str] | None:
    """(provider, model) from a stored document; anything malformed is no default."""
    try:
        return canonical(str(data["provider"])), str(data["model"])
    except (KeyError, TypeError, RhetorError):
        return None


def defaults_of(request_app: Any) -> LegacyDefaults:
    state = request_app.state
    found: LegacyDefaults | None = getattr(state, "legacy_defaults", None)
    if found is None:
        backends = getattr(state, "backends", None)
        store = backends.settings_store() if backends is not None else None
        found = state.legacy_defaults = LegacyDefaults(state.gateway.settings.data_dir / "legacy_provider.json",
                                                       store)
    return found


def legacy_input(body: LegacyBody, defaults: LegacyDefaults) -> ChatInput:
    """A legacy request as a ChatInput: the POST /provider default applies unless the request names one."""
    opts = dict(body.options)
    provider, model = body.provider_id, body.model_id
    if provider is None and model is None and opts.get("provider") is None and opts.get("model") is None:
        chosen = defaults.get()
        if chosen is not None:
            provider, model = chosen
    cid = body.context_id
    component = body.component or (cid if ":" not in cid else None)  # bare adapter ids name the component
    return ChatInput(message=body.message,
                     messages=[Message(m.role, m.content) for m in body.messages] if body.messages else None,
                     context_id=cid, task_type=body.task_type, component=component, provider_id=provider,
                     model_id=model, system_prompt=body.system_prompt, options=opts)


def legacy_result(outcome: ChatOutcome, context: str) -> dict[str, Any]:
    r = outcome.response
    return {"message": r.content, "content": r.content, "model": r.model, "provider": r.provider,
            "context": context, "finished": True, "timestamp": outcome.timestamp, "simulated": r.simulated,
            "fallback": outcome.info.fallback, "usage": r.usage.as_dict(),
            **(outcome.notes.fields or {} if outcome.notes else {})}  # budget_warnings, cached, downgraded


def legacy_error(exc: RhetorError, context: str | None) -> dict[str, Any]:
    return {"error": exc.message, "error_type": exc.type, "context": context, "timestamp": now_iso()}


def legacy_chunk(session: StreamSession, event: Any, context: str) -> dict[str, Any]:
    base = {"context": context, "model": session.model, "provider": session.provider, "timestamp": now_iso()}
    if isinstance(event, TextDelta):
        return {"chunk": event.text, **base, "done": False}
    if isinstance(event, StreamEnd):
        return {"chunk": "", **base, "done": True, "finish_reason": event.finish_reason,
                "usage": event.usage.as_dict(), "simulated": session.simulated, "fallback": session.info.fallback,
                **(session.notes.fields or {} if session.notes else {})}
    assert isinstance(event, StreamError)
    return {"chunk": "", **base, "done": True, "error": event.error, "error_type": event.type}


def _event(data: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(data) + b"\n\n"


def _sse(body: AsyncIterator[bytes]) -> StreamingResponse:
    return ClosingStreamingResponse(body, media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


async def _parse(request: Request, needs: str) -> LegacyBody | Response:
    try:
        body = LegacyBody.model_validate(parse_json(await request.body()))
    except ValidationError as exc:
        return invalid(list(exc.errors()))
    if needs == "message" and body.message is None:
        return invalid([{"loc": ("message",), "msg": "Field required"}])
    if needs == "messages" and not body.messages:
        return invalid([{"loc": ("messages",), "msg": "a non-empty list of {role, content} is required"}])
    return body


async def _answer(request: Request, body: LegacyBody, stream: bool) -> Response:
    gw = gateway(request)
    defaults = defaults_of(request.app)
    await defaults.load()
    inp, context = attribute(legacy_input(body, defaults), request, "legacy"), body.context_id
    try:
        scope = scope_input(gw, inp)  # a shared id (`terma`, `default`) is stateless over HTTP
        if not stream:
            return json_response(annotate(legacy_result(await gw.chat(inp), context), scope))
        session = await gw.open_stream(inp)
    except InvalidRequestError as exc:
        return json_response(legacy_error(exc, context), 400)
    except BudgetExceededError as exc:  # refused before any upstream call: a 429, in the legacy {error} shape
        return json_response({**legacy_error(exc, context), **exc.figures}, 429)
    except RhetorError as exc:  # a provider failure is still HTTP 200 in the legacy contract
        error = legacy_error(exc, context)
        if not stream:
            return json_response(error)

        async def failed() -> AsyncIterator[bytes]:
            yield _event({**error, "chunk": "", "done": True})

        return _sse(failed())

    async def frames() -> AsyncIterator[bytes]:
        async for event in session.events():
            yield _event(annotate(legacy_chunk(session, event, context), scope))

    return _sse(frames())


async def message(request: Request) -> Response:
    body = await _parse(request, "message")
    if isinstance(body, Response):
        return body
    body.messages = None
    return await _answer(request, body, body.streaming)


async def stream(request: Request) -> Response:
    body = await _parse(request, "any")
    if isinstance(body, Response):
        return body
    if body.messages is not None and not body.messages:
        return invalid([{"loc": ("messages",), "msg": "must not be empty (a list of {role, content})"}])
    if (body.message is None) == (body.messages is None):
        return invalid([{"loc": ("message",), "msg": "give exactly one of 'message' or 'messages'"}])
    return await _answer(request, body, True)


async def chat(request: Request) -> Response:
    body = await _parse(request, "messages")
    if isinstance(body, Response):
        return body
    body.message = None
    return await _answer(request, body, body.streaming)


async def providers(request: Request) -> Response:
    status = await gateway(request).provider_status()
    defaults = defaults_of(request.app)
    await defaults.load()
    chosen = defaults.get()
    status["current_provider"], status["current_model"] = chosen or (status["default_provider"],
                                                                     status["default_model"])
    return json_response(status)


async def set_provider(request: Request) -> Response:
    data = parse_json(await request.body())
    if not isinstance(data, dict):
        return invalid([{"loc": ("body",), "msg": "a JSON object is required"}])
    raw_provider, raw_model = data.get("provider_id") or data.get("provider"), data.get("model_id") or data.get("model")
    if not isinstance(raw_provider, str) or not raw_provider:
        return invalid([{"loc": ("provider_id",), "msg": "Field required (a provider id, e.g. 'anthropic')"}])
    if raw_model is not None and not isinstance(raw_model, str):
        return invalid([{"loc": ("model_id",), "msg": "must be a string"}])
    gw = gateway(request)
    try:
        name = canonical(raw_provider)
        provider = gw.providers.get(name)
        model = raw_model or provider.default_model
        known = await provider.models()
        if known and model not in known:
            raise UnknownModelError(name, model, known)
    except InvalidRequestError as exc:
        return json_response({"success": False, "error": exc.message, "detail": exc.message}, 400)
    await defaults_of(request.app).set(name, model)
    return json_response({"success": True, "provider": name, "model": model})


routes: list[BaseRoute] = [
    Route("/providers", providers, methods=["GET"]),
    Route("/api/providers", providers, methods=["GET"]),
    Route("/provider", set_provider, methods=["POST"]),
    Route("/api/provider", set_provider, methods=["POST"]),
    Route("/message", message, methods=["POST"]),
    Route("/stream", stream, methods=["POST"]),
    Route("/chat", chat, methods=["POST"]),
]

__all__ = ["LegacyBody", "LegacyDefaults", "defaults_of", "legacy_chunk", "legacy_error", "legacy_input",
           "legacy_result", "routes"]
