"""The front's SERVER span: a pure-ASGI middleware, installed by the app factory only when tracing is on (off, it
does not exist and costs nothing). It continues the caller's trace (`traceparent`/`tracestate`), names the span
`METHOD /route/{template}` once routing has matched (never the raw path: ids stay out of span names), records the
status, and ends the span when the last body byte is sent — so a stream's span covers the whole stream.

A WebSocket gets no connection-long span: each request on it is its own trace, rooted at its `rhetor.chat` span.
FastAPI's own server spans are switched off by the app factory, so a request has exactly one SERVER span.
Knows ASGI and the Tracing object; nothing of routes' meaning, providers or the gateway.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.trace import StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rhetor.observability.otel import Tracing, mark_error
from rhetor.observability.tracing import _active

_PROPAGATED = (b"traceparent", b"tracestate", b"baggage")


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing
        self._routes: dict[Any, list[Any]] | None = None  # endpoint -> its routes, built on first use

    def _template(self, scope: Scope) -> str | None:
        """The matched route's path template (`/api/v1/contexts/{context_id:path}`), from the endpoint routing
        chose: Starlette routes mounted on FastAPI's router leave `endpoint` in the scope, not `route`."""
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path_format", None)
        endpoint, router = scope.get("endpoint"), scope.get("router")
        if endpoint is None or router is None:
            return None
        if self._routes is None:
            table: dict[Any, list[Any]] = {}
            for r in getattr(router, "routes", ()):
                table.setdefault(getattr(r, "endpoint", None), []).append(r)
            self._routes = table
        candidates = self._routes.get(endpoint, ())
        if len(candidates) == 1:
            return getattr(candidates[0], "path_format", None)
        for r in candidates:  # one handler on several paths: the one whose pattern matches
            regex = getattr(r, "path_regex", None)
            if regex is not None and regex.match(scope.get("path", "")):
                return getattr(r, "path_format", None)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            token = _active.set(self.tracing)
            try:
                await self.app(scope, receive, send)
            finally:
                _active.reset(token)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier: dict[str, str] = {}
        for key, value in scope.get("headers", ()):
            if key in _PROPAGATED:
                carrier[key.decode("latin-1")] = value.decode("latin-1")
        method = scope.get("method", "GET")
        attrs: dict[str, Any] = {"http.request.method": method, "url.path": scope.get("path", ""),
                                 "url.scheme": scope.get("scheme", "http")}
        server = scope.get("server")
        if server:
            attrs["server.address"], attrs["server.port"] = server[0], server[1]
        span = self.tracing.server_span(method, carrier, attrs)
        done = False

        def finish(error: BaseException | None = None) -> None:
            nonlocal done
            if done:
                return
            done = True
            state = scope.get("state") or {}
            if state.get("request_id"):
                span.set_attribute("rhetor.request_id", str(state["request_id"]))
            if error is not None:
                mark_error(span, error)
            span.end()

        async def traced_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                span.set_attribute("http.response.status_code", status)
                template = self._template(scope)
                if template:
                    span.set_attribute("http.route", template)
                    span.update_name(f"{method} {template}")
                if status >= 500:
                    span.set_attribute("error.type", str(status))
                    span.set_status(StatusCode.ERROR)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        token = _active.set(self.tracing)
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                await self.app(scope, receive, traced_send)
        except BaseException as exc:
            finish(exc)
            raise
        finally:
            _active.reset(token)
            finish()


__all__ = ["TracingMiddleware"]
