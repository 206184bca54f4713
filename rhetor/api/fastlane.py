"""The fast lane: the hot POST routes (chat, messages, embeddings, responses, the legacy calls — every plain
Starlette route without path parameters) dispatched by exact path straight to their endpoint, past the layers
FastAPI puts around every request: its server-error, telemetry and body-limit wrappers, CORS, the exception and
exit-stack middleware, and the router's linear regex scan over ~130 routes. Measured with benchmarks/run.py and
py-spy, those layers were ~18% of a chat request's CPU.

Nothing a caller sees changes: Rhetor's own middleware runs in the same order (tracing, GatewayMiddleware's ids,
body cap, metrics and 500s, the metrics token, ApiKeyMiddleware's keys and limits), errors go to the app's own
exception handlers looked up as Starlette's ExceptionMiddleware does, `scope["route"]` is set for the metric
labels, the `Vary: Origin` header CORS adds is added, and a request that carries `Origin` (a browser's CORS
request) or a root path takes the full stack. Knows Starlette's ASGI contract; nothing of fronts or providers.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Awaitable[Response]]


def fast_routes(routes: list[Any]) -> dict[str, Route]:
    """path → route for every plain `Route` serving POST without path parameters, with an async function as its
    endpoint, that is the first full match the router would find for a POST to that path."""
    out: dict[str, Route] = {}
    for item in routes:
        if type(item) is not Route:
            continue
        route: Route = item
        if not route.methods or "POST" not in route.methods or route.param_convertors:
            continue
        endpoint = route.endpoint
        if not (inspect.isfunction(endpoint) or inspect.ismethod(endpoint)) \
                or not inspect.iscoroutinefunction(endpoint) or route.path in out:
            continue
        probe = {"type": "http", "method": "POST", "path": route.path, "root_path": "", "headers": []}
        first = next(i for i, r in enumerate(routes) if r.matches(probe)[0] == Match.FULL)  # itself at the latest
        if routes[first] is item:
            out[route.path] = route
    return out


class FastRequest(Request):
    """Starlette's Request, reading its body without the async generator and `aclosing` Starlette's `body()` puts
    around the receive calls (~2.5% of an `oa` request's profile, benchmarks/instructions.py --profile): the same
    messages read, the same errors (ClientDisconnect, a consumed stream), the chunks of a multi-part body joined."""

    async def body(self) -> bytes:
        body: bytes | None = getattr(self, "_body", None)
        if body is not None:
            return body
        if self._stream_consumed:
            raise RuntimeError("Stream consumed")
        chunks: list[bytes] = []
        while not self._stream_consumed:
            message = await self._receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self._stream_consumed = True
            elif message["type"] == "http.disconnect":
                self._is_disconnected = True
                raise ClientDisconnect()
        self._body = body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return body


class Endpoints:
    """The innermost layer of the fast lane: runs the route's endpoint and sends its response."""

    def __init__(self, app: Starlette, routes: Mapping[str, Route], handlers: Mapping[Any, Handler]) -> None:
        self.app = app
        self.routes = routes
        # As ExceptionMiddleware gets them: the 500/Exception handler belongs to the outer layer (here
        # GatewayMiddleware answers unexpected errors), status-code handlers only answer HTTPExceptions.
        self.handlers = {k: v for k, v in handlers.items() if isinstance(k, type) and k is not Exception}

    def handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            found = self.handlers.get(cls)
            if found is not None:
                return found
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes[scope["path"]]
        scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
        scope["router"] = self.app.router
        request = FastRequest(scope, receive, send)
        try:
            response: Response = await route.endpoint(request)
        except Exception as exc:
            handler = self.handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        _vary_origin(response)
        await response(scope, receive, send)


def _vary_origin(response: Response) -> None:
    """What CORSMiddleware adds to a response to a request without Origin."""
    headers = response.raw_headers
    for i, (name, value) in enumerate(headers):
        if name == b"vary":
            headers[i] = (name, value + b", Origin")
            return
    headers.append((b"vary", b"Origin"))


class Dispatch:
    """The app's middleware stack: a POST to a fast path without Origin takes `fast`, anything else `slow`."""

    def __init__(self, fast: ASGIApp, slow: ASGIApp, paths: frozenset[str]) -> None:
        self.fast, self.slow, self.paths = fast, slow, paths

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing on the chosen stack's awaitable (Starlette awaits it): no coroutine of its own.
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths \
                and not scope.get("root_path"):
            for name, _ in scope["headers"]:
                if name == b"origin":
                    break
            else:
                return self.fast(scope, receive, send)
        return self.slow(scope, receive, send)


def build(app: Starlette, slow: ASGIApp, user_middleware: list[Middleware]) -> ASGIApp:
    """`slow` (the framework's full stack) behind a Dispatch whose fast lane is the user middleware (CORS aside)
    around Endpoints."""
    routes = fast_routes(app.router.routes)
    if not routes:
        return slow
    fast: ASGIApp = Endpoints(app, routes, app.exception_handlers)
    for cls, args, kwargs in reversed(user_middleware):
        if cls is not CORSMiddleware:
            fast = cls(fast, *args, **kwargs)
    return Dispatch(fast, slow, frozenset(routes))


__all__ = ["Dispatch", "Endpoints", "FastRequest", "build", "fast_routes"]
