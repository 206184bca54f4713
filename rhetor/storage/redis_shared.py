"""Everything Rhetor shares through Redis besides rate limits, assembled: the change bus, budget spend and
reservations, the response cache and the breaker mirror — built from one client (RHETOR_REDIS_URL) by
`Backends.shared()`, and hooked to the app's parts by `attach` once they exist:

    topic       published when                                    every other process then
    keys        a caller key is created, changed, rotated, revoked  re-reads the key store (refused at once)
    templates   a template version is added, activated, deleted    re-reads the template store
    budgets     a budget is created, replaced, deleted             re-reads the budget definitions
    breaker     a breaker opens or closes, a Retry-After arrives   applies it to its own mirror
    config      the running config is reloaded (rhetor.workers /   reloads its own (the caller subscribes)
                the admin reload route publishes it)

`status()` is what /health shows under details.storage.redis_shared: for each part, shared or per-process right
now. Knows the storage room's Redis parts and the hooks the rooms expose; nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from rhetor.settings import Settings
from rhetor.storage.redis_breakers import BreakerMirror
from rhetor.storage.redis_budgets import RedisSpend
from rhetor.storage.redis_bus import RedisBus
from rhetor.storage.redis_cache import RedisCache

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from rhetor.routing.breaker import CircuitBreaker
    from rhetor.routing.cooldown import Cooldowns

log = logging.getLogger("rhetor.storage")
REFRESH_S = 2.0  # budgets' local mirror re-read from Redis (status; what degraded mode starts from)


class _Runner(Protocol):
    @property
    def cooldowns(self) -> Cooldowns: ...


class _Routed(Protocol):
    @property
    def breaker(self) -> CircuitBreaker: ...

    @property
    def runner(self) -> _Runner: ...


class _Reloadable(Protocol):
    on_change: Any

    async def reload(self) -> None: ...


class RedisShared:
    def __init__(self, client: Redis, settings: Settings, url: str) -> None:
        prefix = settings.redis_prefix
        self.bus = RedisBus(client, prefix, url)
        self.spend = RedisSpend(client, prefix, url, lease_s=settings.budget_hold_lease_s)
        self.cache = (RedisCache(client, prefix, url, ttl_s=settings.cache_ttl_s,
                                 max_bytes=int(settings.cache_max_mb * 2**20)) if settings.cache_max_mb > 0 else None)
        self._client, self._prefix = client, prefix
        self.breakers: BreakerMirror | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def attach(self, gateway: _Routed, keys: _Reloadable, budgets: _Reloadable,
                     templates: _Reloadable | None) -> None:
        """Publish this process's changes and apply the others' (see the table above); start listening."""
        self.breakers = BreakerMirror(self._client, self._prefix, self.bus, gateway.breaker,
                                      gateway.runner.cooldowns)
        self.breakers.attach()
        await self.breakers.load()
        for topic, part in (("keys", keys), ("budgets", budgets), ("templates", templates)):
            if part is None:
                continue
            part.on_change = lambda t=topic: self.bus.publish(t)
            self.bus.subscribe(topic, _reloader(part))
        self.bus.start()
        refresh = getattr(budgets, "refresh", None)
        if refresh is not None:
            self._refresher = asyncio.get_running_loop().create_task(_every(REFRESH_S, refresh),
                                                                     name="rhetor-budget-refresh")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.bus.close()
        if self.breakers is not None:
            self.breakers.detach()
            await self.breakers.drain()
        await self.spend.drain()
        if self.cache is not None:
            await self.cache.drain()

    def status(self) -> dict[str, Any]:
        parts: dict[str, Any] = {
            "change_bus": self.bus.status(),
            "budgets": self.spend.status(),
            "breakers": {"state": "shared" if self.bus.shared else "per-process (redis unreachable)",
                         **(self.breakers.status() if self.breakers is not None else {})},
        }
        if self.cache is not None:
            parts["response_cache"] = self.cache.status()
        return parts

    def report(self, out: dict[str, Any]) -> None:
        """Amend Backends.status(): these guarantees move from per_process to shared while Redis answers."""
        shared, alone = self.shared_now()
        mine = ("budget", "breakers", "response cache", "templates cache", "change notices")
        before = out.get("shared", [])
        if not self.bus.listening and "rate limits" in before:  # Redis away: so are the limit windows, whether
            before.remove("rate limits")  # or not a limited request has found out yet
            out.setdefault("per_process", []).insert(0, "rate limits")
        out["per_process"] = [p for p in out.get("per_process", []) if not str(p).startswith(mine)] + alone
        out["shared"] = [*before, *shared]
        out["redis_shared"] = self.status()

    def shared_now(self) -> tuple[list[str], list[str]]:
        """(shared, per-process) guarantees at this moment, for /health's lists."""
        shared: list[str] = []
        alone: list[str] = []
        up = self.bus.listening  # the bus's connection notices a lost Redis at once; the parts on their next call
        for name, ok in (("budget spend counters", self.spend.shared), ("breakers and cool-downs", True),
                         ("change notices (keys, templates, budgets, config)", True),
                         *((("response cache", self.cache.shared),) if self.cache is not None else ())):
            (shared if ok and up else alone).append(name)
        return shared, alone


def _reloader(part: _Reloadable) -> Any:
    async def reload(data: dict[str, Any]) -> None:
        await part.reload()

    return reload


async def _every(seconds: float, call: Any) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await call()
        except Exception as exc:  # a refresh that fails leaves the last figures; the parts log their own loss
            log.debug("budget refresh failed: %s", exc)


__all__ = ["RedisShared"]
