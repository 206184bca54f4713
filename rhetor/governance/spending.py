"""Budgets and the response cache assembled from Settings: the budget book (the environment's global budget plus
those kept in budgets.db, their spend seeded from the usage ledger), the response cache, and the gate handed to
the gateway. The book also listens to the meter's records (real costs). The admin operations of the budgets API
(put, delete, list) live here so the web layer stays thin. With Redis (rhetor.storage.redis_shared) the spend
and the cache are shared by every replica: `on_change` tells the others after put/delete, and they `reload`.
Without Redis but with several processes writing one usage ledger (`--workers N` on one data dir, or replicas on
a PostgreSQL ledger), each re-reads the budgets' spend from the ledger every RESYNC_S (`resync`): a budget is
then overshot by at most what every process spends in about RESYNC_S + the ledger's flush interval.
Knows Settings and the room's parts; nothing of HTTP or Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from rhetor.errors import InvalidRequestError, RhetorError
from rhetor.governance.access import Tee
from rhetor.governance.budget_store import ENV_BUDGET_ID, BudgetStore, SqliteBudgetStore, env_budget, seed_spend
from rhetor.governance.budgets import PERIODS, Budget, BudgetBook, SharedSpend, Subject, WindowRef
from rhetor.governance.cache import MemoryCache, ResponseCache
from rhetor.governance.gate import Gate
from rhetor.governance.ledger import Ledger
from rhetor.governance.meter import Meter
from rhetor.governance.prices import PriceTable
from rhetor.routing.config import TaskConfig
from rhetor.settings import Settings

log = logging.getLogger("rhetor.budgets")
RESYNC_S = 2.0  # without Redis, several processes: spend re-read from the shared usage ledger this often


class Governed(Protocol):
    meter: Meter | None
    gate: Gate | None
    config: TaskConfig


class Spending:
    def __init__(self, settings: Settings, prices: PriceTable, *, shared: SharedSpend | None = None,
                 cache: ResponseCache | None = None, store: BudgetStore | None = None) -> None:
        self.settings, self.prices = settings, prices
        self.book = BudgetBook(shared=shared)
        self.store = store or SqliteBudgetStore(settings.data_dir / "budgets.db")  # PostgreSQL when given
        self.cache = cache if cache is not None else (
            MemoryCache(ttl_s=settings.cache_ttl_s, max_bytes=int(settings.cache_max_mb * 2**20))
            if settings.cache_max_mb > 0 else None)
        self.on_change: Callable[[], None] | None = None  # set when other replicas must hear of put/delete
        self._resyncer: asyncio.Task[None] | None = None
        self.resynced: float | None = None  # when spend was last re-read from the shared ledger (no Redis)
        self.env = env_budget(settings)
        self.ledger: Ledger | None = None
        self._gateway: Governed | None = None
        self._open = False
        self.error: str | None = None

    async def start(self, gateway: Governed, ledger: Ledger | None) -> None:
        """Load the budgets (env first; a stored one with the same id wins), seed their spend, arm the gateway."""
        self.ledger, self._gateway = ledger, gateway
        if self.env is not None:
            self.book.put(self.env, source="env")
        try:
            await self.store.open()
            self._open = True
            for budget in await self.store.load():
                self.book.put(budget)
        except Exception as exc:  # an unreadable budgets.db: the env budget still holds, the API says why
            self.error = f"cannot read budgets.db: {exc}"
            log.warning("budgets: %s", self.error)
        await self._seed(self.book.subjects())
        gateway.gate = Gate(self.prices, gateway.config, self.book, self.cache)
        self._listen()
        if self.book.shared is None and ledger is not None and (
                self.settings.workers > 1 or self.settings.database_url is not None):
            self._resyncer = asyncio.get_running_loop().create_task(self._resync_every(), name="rhetor-budget-resync")

    def _listen(self) -> None:
        """The book hears every record (with its real cost) once a budget exists."""
        gw = self._gateway
        if gw is None or not self.book.budgets or getattr(gw, "_budget_sink", False):
            return
        if gw.meter is None:
            gw.meter = Meter(self.book, self.prices)
        else:
            sink = gw.meter.sink  # one flat fan-out: the ledger's sinks, then the budgets'
            gw.meter.sink = Tee(*sink.sinks, self.book) if isinstance(sink, Tee) else Tee(sink, self.book)
        gw._budget_sink = True  # type: ignore[attr-defined]

    async def _seed(self, subjects: list[Any]) -> None:
        store = self.ledger.store if self.ledger is not None else None
        if store is None or not subjects:
            return
        with contextlib.suppress(Exception):
            await self.ledger.flush()  # type: ignore[union-attr]
        try:
            if self.book.shared is None:
                await seed_spend(self.book, store, subjects)
            else:  # the ledger's spend goes to the shared windows no replica has seeded yet
                seeded = BudgetBook()
                await seed_spend(seeded, store, subjects)
                await self._seed_shared(seeded, subjects)
        except Exception as exc:  # the ledger unavailable: spend counts from now, and the status says so
            self.error = f"spend not seeded from the usage ledger: {exc}"
            log.warning("budgets: %s", self.error)

    async def _seed_shared(self, seeded: BudgetBook, subjects: list[Subject]) -> None:
        shared = self.book.shared
        assert shared is not None
        refs: list[WindowRef] = []
        figures: list[tuple[float, int]] = []
        for subject in subjects:
            for period in PERIODS:
                w = seeded.counters.window(subject, period, time.time())  # type: ignore[arg-type]
                refs.append((subject[0], subject[1], period, w.start, w.end))
                figures.append((w.usd, w.tokens))
        await shared.seed(refs, figures)
        await self.book.refresh()

    async def reload(self) -> None:
        """Another replica changed the budget definitions: read them again (the env budget stays under)."""
        if not self._open:
            return
        stored = {b.id: b for b in await self.store.load()}
        for budget_id in list(self.book.budgets):
            if budget_id not in stored and self.book.sources.get(budget_id) != "env":
                self.book.remove(budget_id)
        if self.env is not None and self.env.id not in stored:
            self.book.put(self.env, source="env")
        fresh = [b.subject for b in stored.values() if b.subject not in self.book.subjects()]
        for budget in stored.values():
            self.book.put(budget)
        await self._seed(fresh)
        self._listen()

    async def refresh(self) -> None:
        """The shared spend figures into the local mirror (rhetor.storage.redis_shared calls it every 2 s)."""
        await self.book.refresh()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def _resync_every(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_S)
            try:
                await self.resync()
            except Exception as exc:  # the ledger unreachable: this process keeps counting its own spend
                log.debug("budgets: spend not re-read from the usage ledger: %s", exc)

    async def resync(self, now: float | None = None) -> None:
        """Take the ledger's spend where it is ahead of this process's count (other processes spent it)."""
        store = self.ledger.store if self.ledger is not None else None
        subjects = self.book.subjects()
        if store is None or not subjects:
            return
        now = time.time() if now is None else now
        seen = BudgetBook()
        await seed_spend(seen, store, subjects, now)
        for subject in subjects:
            for period in PERIODS:
                mine = self.book.counters.window(subject, period, now)  # type: ignore[arg-type]
                theirs = seen.counters.window(subject, period, now)  # type: ignore[arg-type]
                mine.usd, mine.tokens = max(mine.usd, theirs.usd), max(mine.tokens, theirs.tokens)
        self.resynced = now

    async def close(self) -> None:
        if self._resyncer is not None:
            self._resyncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resyncer
            self._resyncer = None
        if self._open:
            self._open = False
            await self.store.close()

    # -- admin (the budgets API) -------------------------------------------------------------------------------
    async def put(self, budget: Budget) -> bool:
        """Create or replace; True if it was new. Spend already in the ledger counts at once."""
        if not self._open:
            raise InvalidRequestError(f"budgets cannot be saved: {self.error or 'the budget store is closed'}",
                                      param="id")
        new_subject = budget.subject not in self.book.subjects()
        await self.store.save(budget)
        created = budget.id not in self.book.budgets
        if new_subject:
            await self._seed([budget.subject])
        self.book.put(budget)
        self._listen()
        self._changed()
        return created

    async def delete(self, budget_id: str) -> bool:
        stored = False
        if self._open:
            try:
                stored = await self.store.delete(budget_id)
            except RhetorError:
                stored = False
        found = self.book.remove(budget_id) or stored
        if budget_id == ENV_BUDGET_ID and self.env is not None and stored:
            self.book.put(self.env, source="env")  # the environment's budget comes back when its override goes
        if found:
            self._changed()
        return found

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"budgets": len(self.book.budgets), "error": self.error,
                               "spend": "shared (redis)" if self.book.shared is not None else
                               f"this process + the usage ledger every {RESYNC_S:g} s" if self._resyncer is not None
                               else "this process"}
        if self.cache is not None:
            out["cache"] = self.cache.status()
        return out


__all__ = ["Spending"]
