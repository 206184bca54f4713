"""Admin routes for the running configuration, guarded by RHETOR_ADMIN_KEY like the key and budget admin routes
(rhetor.api.keys.require_admin):

- `POST /api/v1/admin/reload`: re-read tasks.json, the providers file, the catalogue and the prices
  (rhetor.config.reload) without dropping a request or a stream. 200 with the new generation; a bad file is a 400
  whose message is exactly `python -m rhetor check-config`'s, and the running configuration stays. Under
  `--workers N` the supervisor is then asked (SIGHUP) to reload every worker of the group.
- `GET /api/v1/admin/reload`: the generation and the last attempt (ok or its error).
`on_sighup(app)` is the SIGHUP handler `python -m rhetor` installs: the same reload, its refusal logged.
Cross-replica: with Redis (`app.state.bus`, rhetor.storage.redis_bus) a route-made reload publishes the `config`
topic and every other worker and replica reloads on it; without Redis, `--workers N`'s supervisor reloads its
other workers (SIGHUP). Knows the app's state objects; nothing of providers' wire formats.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from rhetor.api.keys import require_admin
from rhetor.api.responses import json_response
from rhetor.config.reload import Reloader
from rhetor.errors import ConfigError
from rhetor.workers import WorkerInfo

log = logging.getLogger("rhetor.reload")
PATH = "/api/v1/admin/reload"


def install(app: Any) -> None:
    """Mount the routes; with a change bus, reload when another process announces a config change."""
    app.router.routes.extend(routes)
    bus = getattr(app.state, "bus", None)
    if bus is not None:
        bus.subscribe("config", lambda _data: _remote(app))


async def _remote(app: Any) -> None:
    reloader = reloader_of(app)
    if reloader is not None:
        await reloader.on_remote()


def reloader_of(app: Any) -> Reloader | None:
    """The app's reloader, made on first use; None until the gateway exists (still starting)."""
    reloader: Reloader | None = getattr(app.state, "reloader", None)
    gateway = getattr(app.state, "gateway", None)
    if reloader is None and gateway is not None:
        reloader = app.state.reloader = Reloader(gateway, getattr(app.state, "governance", None),
                                                 app.state.runtime.obs)
        bus = getattr(app.state, "bus", None)
        if bus is not None:
            reloader.announce = lambda: bus.publish("config")
    return reloader


async def reload_route(request: Request) -> Response:
    require_admin(request)
    reloader = reloader_of(request.app)
    if reloader is None:
        return json_response({"error": {"type": "not_ready", "message": "Rhetor is still starting"}}, 503)
    try:
        result = await reloader.reload()
    except ConfigError as exc:
        return json_response({"error": {"type": "invalid_config", "message": exc.message},
                              "status": "refused", "generation": reloader.generation,
                              "message": "the running configuration stays"}, 400)
    worker = WorkerInfo.from_env()
    shared = bool(getattr(getattr(request.app.state, "bus", None), "shared", False))  # the bus told them already
    if worker is not None and not shared and worker.signal_group(signal.SIGHUP):  # every worker of the group
        result["workers"] = worker.count
    return json_response(result)


async def reload_status(request: Request) -> Response:
    require_admin(request)
    reloader = reloader_of(request.app)
    return json_response({"generation": reloader.generation if reloader else 0,
                          "last": reloader.last if reloader else None})


def on_sighup(app: Any) -> None:
    """The SIGHUP handler (runs on the main thread, between the loop's steps): schedule the reload on the loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        log.warning("SIGHUP ignored: not serving yet")
        return
    reloader = reloader_of(app)
    if reloader is None:
        log.warning("SIGHUP ignored: still starting")
        return
    loop.call_soon_threadsafe(lambda: _spawn(reloader))


_pending: set[asyncio.Task[None]] = set()


def _spawn(reloader: Reloader) -> None:
    task = asyncio.ensure_future(reloader.reload_logged(origin="SIGHUP"))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


routes: list[BaseRoute] = [Route(PATH, reload_route, methods=["POST"]), Route(PATH, reload_status, methods=["GET"])]

__all__ = ["PATH", "install", "on_sighup", "reloader_of", "routes"]
