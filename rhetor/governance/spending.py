"""Budgets and the response cache assembled from Settings: the budget book (the environment's global budget plus
those kept in budgets.db, their spend seeded from the usage ledger), the response cache, and the gate handed to
the gateway. The book also listens to the meter's records (real costs). The admin operations of the budgets API
(put, delete, list) live here so the web layer stays thin. Knows Settings and the room's parts; nothing of HTTP.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Protocol

from rhetor.errors import InvalidRequestError, RhetorError
from rhetor.governance.budget_store import ENV_BUDGET_ID, BudgetStore, SqliteBudgetStore, env_budget, seed_spend
from rhetor.governance.budgets import Budget, BudgetBook
from rhetor.governance.cache import MemoryCache
from rhetor.governance.gate import Gate
from rhetor.governance.ledger import Ledger, UsageRecord, UsageSink
from rhetor.governance.meter import Meter
from rhetor.governance.prices import PriceTable
from rhetor.routing.config import TaskConfig
from rhetor.settings import Settings

log = logging.getLogger("rhetor.budgets")


class Governed(Protocol):
    meter: Meter | None
    gate: Gate | None
    config: TaskConfig


class _Both:
    """Two usage sinks in turn (the ledger's first, then the budgets')."""

    __slots__ = ("first", "second")

    def __init__(self, first: UsageSink, second: UsageSink) -> None:
        self.first, self.second = first, second

    def record(self, rec: UsageRecord) -> None:
        self.first.record(rec)
        self.second.record(rec)


class Spending:
    def __init__(self, settings: Settings, prices: PriceTable, *, store: BudgetStore | None = None) -> None:
        self.settings, self.prices = settings, prices
        self.book = BudgetBook()
        self.store = store or SqliteBudgetStore(settings.data_dir / "budgets.db")  # PostgreSQL when given
        self.cache = (MemoryCache(ttl_s=settings.cache_ttl_s, max_bytes=int(settings.cache_max_mb * 2**20))
                      if settings.cache_max_mb > 0 else None)
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

    def _listen(self) -> None:
        """The book hears every record (with its real cost) once a budget exists."""
        gw = self._gateway
        if gw is None or not self.book.budgets or getattr(gw, "_budget_sink", False):
            return
        if gw.meter is None:
            gw.meter = Meter(self.book, self.prices)
        else:
            gw.meter.sink = _Both(gw.meter.sink, self.book)
        gw._budget_sink = True  # type: ignore[attr-defined]

    async def _seed(self, subjects: list[Any]) -> None:
        store = self.ledger.store if self.ledger is not None else None
        if store is None or not subjects:
            return
        with contextlib.suppress(Exception):
            await self.ledger.flush()  # type: ignore[union-attr]
        try:
            await seed_spend(self.book, store, subjects)
        except Exception as exc:  # the ledger unavailable: spend counts from now, and the status says so
            self.error = f"spend not seeded from the usage ledger: {exc}"
            log.warning("budgets: %s", self.error)

    async def close(self) -> None:
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
        return found

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"budgets": len(self.book.budgets), "error": self.error}
        if self.cache is not None:
            out["cache"] = self.cache.status()
        return out


__all__ = ["Spending"]
