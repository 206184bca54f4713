"""Live reload of the configuration files: tasks.json (RHETOR_TASK_CONFIG), the providers file (RHETOR_PROVIDERS),
the model catalogue (RHETOR_CATALOG) and the prices (RHETOR_PRICES).

`load(settings)` reads and validates all four exactly as start-up and `python -m rhetor check-config` do, into one
`LiveConfig`; a bad file raises ConfigError with check-config's message and nothing running changes.
`Reloader.reload()` then swaps the gateway's configuration in one synchronous step (no await between the
assignments, so a request reads either the old set or the new one): a fresh fallback runner over the new providers
(sharing the breaker and the cool-downs), the route table, defaults, deployments, catalogue, the budget/cache gate
and the price table (updated in place: the meter, the budgets and the label bounds hold it). A request already
running keeps the runner, targets and provider clients it holds; the old clients are closed once the streams and
answers that were in flight at the swap have finished (at most CLOSE_AFTER_S later).
Environment variables (keys, URLs, limits) are not re-read: those need a restart.
Triggers: SIGHUP (installed by `python -m rhetor`), POST /api/v1/admin/reload (rhetor.api.admin), and
`Reloader.on_remote` for a change another replica announced on the change bus's `config` topic (a route-made
reload calls `Reloader.announce`, which rhetor.api.admin points at the bus). Knows the gateway's and governance's
attribute names; nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rhetor.catalog import Catalog, load_catalog
from rhetor.errors import ConfigError
from rhetor.governance.prices import PriceTable, load_prices
from rhetor.providers import Providers
from rhetor.routing.config import TaskConfig, load_config
from rhetor.routing.deployment_check import check_deployments
from rhetor.routing.fallback import FallbackRunner
from rhetor.routing.lifecycle import check_routes
from rhetor.routing.models import validate_aliases
from rhetor.settings import Settings

log = logging.getLogger("rhetor.reload")

CLOSE_AFTER_S = 600.0  # the old provider clients are closed at the latest this long after a swap
POLL_S = 0.5


@dataclass(frozen=True)
class LiveConfig:
    """Everything a reload replaces, read and validated together."""

    tasks: TaskConfig
    providers: Providers
    catalog: Catalog
    prices: PriceTable
    warnings: tuple[str, ...] = ()
    files: dict[str, str | None] = field(default_factory=dict)


def load(settings: Settings) -> LiveConfig:
    """Read and validate the four files (ConfigError: check-config's message). Blocking file reads: call it
    off the event loop."""
    load_catalog.cache_clear()  # the catalogue is memoized per path: a reload must read the file again
    providers = Providers(settings)  # RHETOR_PROVIDERS, validated naming the key path
    source = str(settings.task_config or "tasks.json")
    tasks = load_config(settings.task_config, providers.deployment_kinds())
    validate_aliases(settings.model_aliases)
    catalog = load_catalog(settings.catalog_file)
    warnings = check_routes(tasks, catalog, source)  # a retired model routed: ConfigError naming it
    check_deployments(tasks, providers.deployments, catalog, source)
    prices = load_prices(settings.prices_file, settings.catalog_file)
    files = {"tasks": str(settings.task_config) if settings.task_config else None,
             "providers": str(settings.providers_file) if settings.providers_file else None,
             "catalog": str(settings.catalog_file) if settings.catalog_file else None,
             "prices": str(settings.prices_file) if settings.prices_file else None}
    return LiveConfig(tasks, providers, catalog, prices, tuple(warnings), files)


def swap_prices(table: PriceTable, new: PriceTable) -> None:
    """Update the one price table every holder shares (meter, budgets, gate, label bounds), in place."""
    table.entries = new.entries
    table.__dict__["_memo"] = {}  # the lookup memo of the old entries


class Reloader:
    """One process's reload: serialized, validated before anything changes, counted."""

    def __init__(self, gateway: Any, governance: Any = None, obs: Any = None) -> None:
        self.gateway, self.governance, self.obs = gateway, governance, obs
        self.generation = 0
        self.last: dict[str, Any] | None = None  # the last attempt: when, ok or the error
        self.announce: Callable[[], None] | None = None  # a bus's publish: other replicas reload too
        self._lock = asyncio.Lock()
        self._closing: set[asyncio.Task[None]] = set()

    async def reload(self, *, origin: str = "local") -> dict[str, Any]:
        """Re-read and swap; ConfigError (nothing changed) when a file is bad."""
        async with self._lock:
            started = time.monotonic()
            try:
                live = await asyncio.to_thread(load, self.gateway.settings)
                defaults = live.providers.default_models()  # builds provider objects: no I/O, on the loop
            except ConfigError as exc:
                self.last = {"ok": False, "error": exc.message, "origin": origin, "at": time.time()}
                raise
            old = self._swap(live, defaults)
            self.generation += 1
            self._close_later(old)
            result = {"status": "reloaded", "generation": self.generation, "origin": origin,
                      "files": live.files, "routes": len(live.tasks.root),
                      "deployments": len(live.providers.deployments),
                      "warnings": list(live.warnings), "took_ms": round((time.monotonic() - started) * 1000, 2)}
            self.last = {"ok": True, "origin": origin, "at": time.time(), "generation": self.generation}
            log.info("configuration reloaded (generation %d, from %s): %d routes, %d deployments", self.generation,
                     origin, len(live.tasks.root), len(live.providers.deployments))
            for line in live.warnings:
                log.warning("%s", line)
        if origin == "local" and self.announce is not None:
            with contextlib.suppress(Exception):
                self.announce()
        return result

    async def on_remote(self) -> None:
        """Another replica reloaded: do the same here (a bad file is logged, the running config stays)."""
        await self.reload_logged(origin="remote")

    async def reload_logged(self, *, origin: str) -> None:
        try:
            await self.reload(origin=origin)
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays: %s", exc.message)

    def _swap(self, live: LiveConfig, defaults: dict[str, str]) -> Providers:
        """Every assignment in one synchronous step."""
        gw, s = self.gateway, self.gateway.settings
        old_runner: FallbackRunner = gw.runner
        runner = FallbackRunner(live.providers, gw.breaker, max_retry_after_s=s.max_retry_after_s,
                                backoff_base_s=s.backoff_base_s, max_retry_wait_s=s.max_retry_wait_s,
                                cooldowns=old_runner.cooldowns)
        runner.observer = old_runner.observer
        if live.providers.deployments:
            from rhetor.routing.balance import Balancer

            runner.balancer = Balancer(live.providers, gw.breaker, strategy=s.balance, price=gw._deployment_price)
        old: Providers = gw.providers
        gw.providers, gw.runner, gw.config, gw.defaults, gw.catalog = (live.providers, runner, live.tasks, defaults,
                                                                       live.catalog)
        gw.deployment_kinds, gw.listed_models = live.providers.deployment_kinds(), live.providers.listed()
        prices: PriceTable | None = getattr(self.governance, "prices", None)
        if prices is not None:
            swap_prices(prices, live.prices)
        gate = getattr(gw, "gate", None)
        if gate is not None:
            from rhetor.governance.gate import Gate

            gw.gate = Gate(gate.prices, live.tasks, gate.budgets, gate.cache)
        prom = getattr(self.obs, "prom", None)
        if prom is not None and prices is not None:
            from rhetor.observability.hub import bounds_of

            prom.bounds = bounds_of(gw, prices)
        return old

    def _close_later(self, old: Providers) -> None:
        """Close the previous provider clients once what was in flight at the swap is done."""
        drain = self.gateway.drain
        streams = set(drain.streams)
        calls_busy = drain.calls > 0
        keep = getattr(getattr(self.gateway.memory, "embedder", None), "_provider", None)  # the embedder's client

        async def close() -> None:
            deadline = time.monotonic() + CLOSE_AFTER_S
            idle_calls = not calls_busy
            while time.monotonic() < deadline:
                idle_calls = idle_calls or drain.calls == 0
                if idle_calls and not (streams & drain.streams):
                    break
                await asyncio.sleep(POLL_S)
            if keep is not None:
                old._live = {k: p for k, p in old._live.items() if p is not keep}
            with contextlib.suppress(Exception):
                await old.aclose()

        task = asyncio.create_task(close(), name="rhetor-reload-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        for task in list(self._closing):
            task.cancel()


__all__ = ["CLOSE_AFTER_S", "LiveConfig", "Reloader", "load", "swap_prices"]
