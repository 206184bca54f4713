"""`GET /metrics` in the Prometheus text format (OpenMetrics when the scraper's Accept asks for it), and what
guards it: like every other route when caller keys are configured, and also the RHETOR_METRICS_TOKEN (a Bearer
token) for a scraper that should hold no caller key; with the token set and no keys, the token is required.
Gauges of state owned elsewhere (breakers, open streams, backlogs, the ledger's queue) are sampled here at each
scrape, and every few seconds in multi-process mode so every worker's files stay current.
Knows the app's state objects; the metrics themselves live in rhetor.observability.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rhetor.api.presented import presented_key
from rhetor.observability.hub import Observability

PATH = "/metrics"
SAMPLE_S = 5.0  # multi-process mode: how often each worker refreshes its sampled gauges


async def sample(app: Any) -> None:
    """Refresh the sampled gauges from the live objects (never fails a scrape)."""
    obs: Observability = app.state.runtime.obs
    prom = obs.prom
    if prom is None:
        return
    rt, gw = app.state.runtime, getattr(app.state, "gateway", None)
    if gw is not None:
        prom.sample_breakers(gw.breaker.snapshot())
        prom.streams.set(len(gw.drain.streams))
        if gw.memory is not None:
            with contextlib.suppress(Exception):
                prom.embedder_backlog.set((await gw.memory.status()).get("backlog") or 0)
    if rt.mirror is not None:
        prom.mirror_backlog.set(rt.mirror.status().get("pending", 0))
    ledger = getattr(app.state.governance, "ledger", None)
    if ledger is not None:
        prom.ledger_queue.set(ledger.status().get("buffered", 0))


async def prometheus(request: Request) -> Response:
    prom = request.app.state.runtime.obs.prom
    if prom is None:
        return Response("metrics are off (RHETOR_METRICS=0)\n", 404, media_type="text/plain")
    await sample(request.app)
    body, content_type = prom.exposition(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})


def start_sampler(app: Any) -> asyncio.Task[None] | None:
    prom = app.state.runtime.obs.prom
    if prom is None or not prom.multiprocess:
        return None

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):
                await sample(app)
            await asyncio.sleep(SAMPLE_S)

    return asyncio.create_task(loop(), name="rhetor-metrics-sampler")


class MetricsTokenMiddleware:
    """Installed only with RHETOR_METRICS_TOKEN: the token opens GET /metrics whatever the caller keys; without
    it the request goes on to the key check (keys configured) or is refused 401 (no keys)."""

    def __init__(self, app: ASGIApp, token: str, keys_required: Callable[[], bool]) -> None:
        self.app = app
        self.token = token.encode()
        self.keys_required = keys_required
        self.serve = Route(PATH, prometheus, methods=["GET"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        given = presented_key(scope.get("headers", ())) or b""
        if hmac.compare_digest(given, self.token):
            await self.serve.handle(scope, receive, send)
        elif self.keys_required():
            await self.app(scope, receive, send)
        else:
            body = (b'{"error":{"type":"authentication_error","message":"GET /metrics needs the '
                    b'RHETOR_METRICS_TOKEN as \'Authorization: Bearer <token>\'"}}')
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode()),
                                    (b"www-authenticate", b'Bearer realm="rhetor-metrics"')]})
            await send({"type": "http.response.body", "body": body})


routes: list[BaseRoute] = [Route(PATH, prometheus, methods=["GET"])]

__all__ = ["MetricsTokenMiddleware", "routes", "sample", "start_sampler"]
