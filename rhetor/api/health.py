"""Health, readiness, metrics and graceful shutdown: the routes a Tekton launcher and monitors use, and the
process `Runtime` behind them (ready/draining flags, Hermes registration, Engram mirror, counters).

- `GET /health` (`/api/health`, `/api/v1/health`): the Tekton standard body plus `providers {id: bool}`. Fast:
  provider availability is cached and refreshed in the background, never probed on the request path.
- `GET /ready`: 503 until the store is open and the config loaded, and again while draining.
- `POST /shutdown` (`/api/shutdown`): 202, then a graceful exit; loopback callers only (not through an
  untrusted proxy), unless RHETOR_SHUTDOWN_TOKEN is set (then the token is required, in `X-Shutdown-Token` or
  as a Bearer token); refused outright on a non-loopback bind without keys or token (rhetor.api.exposure).
  With caller keys configured, `/health` without a key omits the pid and per-provider metrics.
- On SIGTERM (`RhetorServer.handle_exit`): not ready at once, Hermes told `shutting_down`; Rhetor drains for
  RHETOR_SHUTDOWN_GRACE_S, ends streams still open with their final error frame (`RhetorServer.shutdown`),
  then uvicorn closes the rest and the lifespan unregisters from Hermes and closes the store.
Knows the gateway only for availability; knows nothing of providers' wire formats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hermes_integration import HermesClient, Registration, endpoint_url, registration_payload
from rhetor import __version__, heap, native
from rhetor.api.exposure import exposed_without_auth, exposure_warning, may_see_details, shutdown_refusal
from rhetor.api.responses import json_response
from rhetor.api.usage import usage_status
from rhetor.context.engram import EngramMirror
from rhetor.context.store import ContextStore
from rhetor.gateway import Gateway, now_iso
from rhetor.observability.hub import Observability
from rhetor.settings import Settings
from rhetor.workers import WorkerInfo

log = logging.getLogger("rhetor")


class Runtime:
    """Process-level state of one Rhetor: created with the app, started and stopped by its lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # counters for the Tekton JSON view (`metrics`), Prometheus and the access log, fed from the same facts
        self.obs = Observability(metrics=settings.metrics, access_log=settings.access_log,
                                 key_label=settings.metrics_key_label)
        self.metrics = self.obs.json
        self.started_at, self._t0 = now_iso(), time.monotonic()
        self.ready = False
        self.draining = False
        self.server: uvicorn.Server | None = None  # set by RhetorServer; None when served some other way
        self.gateway: Gateway | None = None
        self.hermes: Registration | None = None
        self.mirror: EngramMirror | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._avail: dict[str, bool] | None = None
        self._avail_at = 0.0
        self._avail_task: asyncio.Task[None] | None = None
        self._announce: asyncio.Task[None] | None = None

    # -- lifespan ----------------------------------------------------------------------------------------
    def wrap_store(self, store: ContextStore) -> ContextStore:
        s = self.settings
        if not s.engram_url:
            return store
        key = s.engram_api_key.get_secret_value() if s.engram_api_key else None
        self.mirror = EngramMirror(store, s.engram_url, api_key=key, timeout_s=s.engram_timeout_s,
                                   queue_max=s.engram_queue_max)
        return self.mirror

    async def start(self, gateway: Gateway) -> None:
        self._loop = asyncio.get_running_loop()
        self.gateway = gateway
        gateway.runner.observer = self.obs
        s = self.settings
        if s.hermes_enabled and s.hermes_url:
            self.hermes = Registration(HermesClient(s.hermes_url), self._hermes_payload,
                                       heartbeat_s=s.hermes_heartbeat_s, retry_max_s=s.hermes_retry_max_s,
                                       check_s=s.hermes_check_s, component_id=s.hermes_component_id,
                                       status=lambda: {"status": "shutting_down" if self.draining else "healthy"})
            self.hermes.start()  # in the background: a missing Hermes never delays serving
        if exposed_without_auth(s):
            log.warning(exposure_warning(s))
        self.ready = True

    async def stop(self) -> None:
        """After uvicorn has drained: tell Hermes (if SIGTERM did not already), then unregister."""
        self.begin_drain()
        await asyncio.sleep(0)  # let a just-scheduled announcement start
        if self._announce is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._announce, 2.0)
        if self.hermes is not None:
            await self.hermes.aclose()
        if self._avail_task is not None:
            self._avail_task.cancel()
        self.obs.close()

    # -- shutdown ----------------------------------------------------------------------------------------
    def begin_drain(self) -> None:
        """Not ready any more, and Hermes is told we are shutting down. Safe to call from a signal handler."""
        if self.draining:
            return
        self.draining, self.ready = True, False
        if self.hermes is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._spawn_announce)

    def _spawn_announce(self) -> None:
        if self.hermes is not None and self._announce is None:
            self._announce = asyncio.create_task(self.hermes.announce("shutting_down", self.port()))

    def request_exit(self) -> None:
        self.begin_drain()
        worker = WorkerInfo.from_env()
        if worker is not None and worker.signal_group(signal.SIGTERM):
            return  # one of `--workers N`: the supervisor stops every worker (rhetor.workers)
        if self.server is not None:
            self.server.should_exit = True  # uvicorn drains exactly as on SIGTERM
        elif threading.current_thread() is threading.main_thread():
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            log.warning("shutdown requested, but this server was not started by `python -m rhetor`: draining only")

    # -- facts -------------------------------------------------------------------------------------------
    def port(self) -> int:
        """The port actually bound (differs from settings with port 0), else the configured one."""
        server = self.server
        if server is not None and server.started:
            for srv in getattr(server, "servers", []):
                for sock in srv.sockets:
                    port: int = sock.getsockname()[1]
                    return port
        return self.settings.port

    def uptime(self) -> float:
        return round(time.monotonic() - self._t0, 3)

    def _hermes_payload(self) -> dict[str, Any] | None:
        if self.server is not None and not self.server.started:
            return None  # not bound yet: the endpoint we would register is not real
        port = self.port()
        return registration_payload(endpoint_url(self.settings.advertise_host or self.settings.host, port),
                                    __version__, port)

    async def availability(self) -> dict[str, bool]:
        """Cached provider availability; a stale value is refreshed in the background, never on the caller."""
        gw = self.gateway
        if gw is None:
            return {}
        if self._avail is None or time.monotonic() - self._avail_at > self.settings.availability_ttl_s:
            if self._avail_task is None or self._avail_task.done():
                self._avail_task = asyncio.create_task(self._refresh(gw))
            if self._avail is None:  # first call only: wait briefly for a first answer
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self._avail_task), 1.0)
        return self._avail if self._avail is not None else {name: False for name in gw.providers.names()}

    async def _refresh(self, gw: Gateway) -> None:
        self._avail = {name: a.ok for name, a in (await gw.providers.availability()).items()}
        self._avail_at = time.monotonic()

    def dependencies(self) -> list[dict[str, Any]]:
        s = self.settings
        hermes = ("registered" if self.hermes.registered else "unregistered") if self.hermes else "disabled"
        engram = self.mirror.state if self.mirror else "disabled"
        return [{"name": "hermes", "required": False, "status": hermes, "url": s.hermes_url if self.hermes else None},
                {"name": "engram", "required": False, "status": engram, "url": s.engram_url}]


class RhetorServer(uvicorn.Server):
    """uvicorn's server, made known to the Runtime (real port, /shutdown) and marking drain on a signal."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime, *, settle_heap: bool = False) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.settle_heap = settle_heap  # the process is ours (the CLI): tune its collector once started
        runtime.server = self

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.runtime.begin_drain()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.settle_heap:
            heap.settle()  # after the lifespan's start-up, so what it built is frozen too (rhetor.heap)
        if self.started:  # one line for start and bind (uvicorn's own four are dropped: rhetor.observability.logs)
            rt = self.runtime
            log.info("Rhetor %s listening on %s (pid %d); compiled governance modules: %s", __version__,
                     endpoint_url(rt.settings.host, rt.port()), os.getpid(),
                     "on" if native.state["active"] else f"off ({native.state['reason']})")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Rhetor drains before uvicorn does, so no stream is ever cut by uvicorn's forced cancel: stop
        accepting, let answers and streams finish for up to RHETOR_SHUTDOWN_GRACE_S, then end the streams still
        open with their protocol's final error frame (rhetor.drain), and only then run uvicorn's own shutdown
        (which closes WebSockets with 1012, so they are left open until here)."""
        gw = self.runtime.gateway
        t0 = time.monotonic()
        if gw is not None:
            log.info("shutting down: no new connections; draining %d open stream(s) and %d answer(s) for up to "
                     "%.1f s", len(gw.drain.streams), gw.drain.calls, self.runtime.settings.shutdown_grace_s)
        if gw is not None and not self.force_exit:
            for server in self.servers:
                server.close()  # no new connections; uvicorn's shutdown closes them again, harmlessly
            for conn in list(self.server_state.connections):
                if not _is_websocket(conn):
                    conn.shutdown()  # idle keep-alive connections close now, busy ones after their response
            grace = self.runtime.settings.shutdown_grace_s
            if not await _until(lambda: not gw.drain.busy() and not self._http_connections(), grace):
                ended = gw.drain.expire()
                log.warning("shutdown grace of %.1f s is over: ending %d open stream(s) with a final error frame",
                            grace, ended)
                await _until(lambda: not gw.drain.streams, FLUSH_S)
        await super().shutdown(sockets)
        log.info("stopped serving after %.2f s of drain", time.monotonic() - t0)

    def _http_connections(self) -> bool:
        return any(not _is_websocket(c) for c in self.server_state.connections)


FLUSH_S = 2.0  # after the grace: how long ended streams get to send their final frame
UVICORN_GRACE_S = 3  # uvicorn's own timeout_graceful_shutdown, which starts only after Rhetor's drain


def _is_websocket(conn: object) -> bool:
    """uvicorn's HTTP protocols (and subclasses, e.g. rhetor.api.protocols) carry a request `cycle`; WebSocket
    protocols do not."""
    return not hasattr(conn, "cycle")


async def _until(done: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Wait until `done()`; False if `timeout_s` passed first."""
    deadline = time.monotonic() + timeout_s
    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        await asyncio.sleep(min(poll_s, left))
    return True


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def health(request: Request) -> Response:
    rt = runtime_of(request)
    hermes = rt.hermes.describe() if rt.hermes else {"enabled": False}
    engram = rt.mirror.status() if rt.mirror else {"enabled": False}
    details: dict[str, Any] = {"ready": rt.ready, "draining": rt.draining, "started_at": rt.started_at,
                               "pid": os.getpid(), "hermes": hermes, "engram": engram}
    worker = WorkerInfo.from_env()  # `--workers N`: the group, and the Hermes registration its supervisor holds
    if worker is not None:
        details["workers"] = group = worker.status()
        hermes = details["hermes"] = group.pop("hermes")
    details["usage_ledger"] = usage_status(request.app)  # ok / degraded (store unavailable) / disabled
    details["native"] = native.state  # compiled governance modules in use, or why not (rhetor.native)
    backends = getattr(request.app.state, "backends", None)  # what is shared across replicas (rhetor.storage)
    if backends is not None:
        details["storage"] = backends.status()
    gw = getattr(request.app.state, "gateway", None)
    if gw is not None:  # the context store lost while serving: chat goes on without it (rhetor.context.availability)
        details["persistence"] = gw.persistence.status()
    metrics = rt.metrics.snapshot()
    if not may_see_details(request, rt.settings):  # keys configured, none presented: Tekton fields only
        del details["pid"], metrics["providers"]
        if worker is not None:
            details["workers"] = {"count": worker.count}
    registered = bool(rt.hermes and rt.hermes.registered) or hermes.get("registered") is True
    return json_response({
        "status": "healthy", "component": "rhetor", "version": __version__, "timestamp": now_iso(),
        "uptime": rt.uptime(), "port": rt.port(), "registeredWithHermes": registered,
        "dependencies": rt.dependencies(), "metrics": metrics, "details": details,
        "providers": await rt.availability(),
    })


async def ready(request: Request) -> Response:
    rt = runtime_of(request)
    if rt.ready:
        return json_response({"status": "ready", "ready": True})
    return json_response({"status": "draining" if rt.draining else "starting", "ready": False}, 503)


async def metrics(request: Request) -> Response:
    rt = runtime_of(request)
    return json_response({"component": "rhetor", "uptime": rt.uptime(), "timestamp": now_iso(),
                          **rt.metrics.snapshot()})


async def shutdown(request: Request) -> Response:
    rt = runtime_of(request)
    refusal = shutdown_refusal(request, rt.settings)  # token, or loopback without a proxy (rhetor.api.exposure)
    if refusal is not None:
        return refusal
    rt.request_exit()
    return json_response({"status": "accepted", "message": "Rhetor is shutting down gracefully",
                          "timestamp": now_iso()}, 202)


routes: list[BaseRoute] = [
    Route("/health", health, methods=["GET"]),
    Route("/api/health", health, methods=["GET"]),
    Route("/api/v1/health", health, methods=["GET"]),
    Route("/ready", ready, methods=["GET"]),
    Route("/api/ready", ready, methods=["GET"]),
    Route("/api/metrics", metrics, methods=["GET"]),  # the Tekton JSON view; Prometheus is /metrics (prometheus.py)
    Route("/api/v1/metrics", metrics, methods=["GET"]),
    Route("/shutdown", shutdown, methods=["POST"]),
    Route("/api/shutdown", shutdown, methods=["POST"]),
]

__all__ = ["RhetorServer", "Runtime", "routes"]
