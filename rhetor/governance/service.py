"""The governance room assembled from Settings: the price table (loaded when the app is built, so a bad
RHETOR_PRICES refuses to start), the usage ledger and its store (opened and flushed by the app's lifespan) and
the meter handed to the gateway; and the terminal report of `python -m rhetor usage`. Budgets, keys, limits and
the cache will be built here too.
Knows Settings and the room's parts; nothing of HTTP.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from rhetor.governance.access import Access, Tee
from rhetor.governance.ledger import Ledger, UsageFilter
from rhetor.governance.meter import Meter
from rhetor.governance.prices import PriceTable, load_prices
from rhetor.governance.report import iso, parse_group_by, time_range, to_csv, to_table
from rhetor.governance.spending import Governed, Spending
from rhetor.governance.sqlite_store import SqliteLedgerStore
from rhetor.settings import Settings
from rhetor.storage.backends import Backends


class Metered(Protocol):
    meter: Meter | None


class Governance:
    def __init__(self, settings: Settings, backends: Backends | None = None) -> None:
        self.settings = settings
        self.prices: PriceTable = load_prices(settings.prices_file, settings.catalog_file)
        self.ledger: Ledger | None = None
        if settings.usage_ledger:
            shared = backends.ledger() if backends is not None else None  # PostgreSQL when RHETOR_DATABASE_URL is set
            self.ledger = Ledger(shared or SqliteLedgerStore(settings.usage_db_path),
                                 flush_interval_s=settings.usage_flush_interval_s,
                                 buffer_max=settings.usage_buffer_max,
                                 retention_days=settings.usage_retention_days)
        redis = backends.shared() if backends else None  # budget spend and the cache shared on Redis when set
        self.spending = Spending(settings, self.prices, shared=redis.spend if redis else None,
                                 cache=redis.cache if redis else None,  # budgets and the response cache
                                 store=backends.budgets() if backends else None)  # definitions on PostgreSQL
        # caller keys and rate limits: on PostgreSQL and Redis when RHETOR_DATABASE_URL / RHETOR_REDIS_URL are set
        self.access = Access(settings, backends.keys() if backends else None, backends.limiter() if backends else None)

    async def start(self, gateway: Metered) -> None:
        """Open the ledger (an unavailable store is reported, never fatal) and meter the gateway's requests."""
        await self.access.start()  # keys.db must open: keys are authentication
        if self.ledger is not None:
            await self.ledger.start()
            gateway.meter = Meter(Tee(self.ledger, self.access), self.prices)  # records also count TPM
        elif self.access.ring.required or self.access.admin_enabled or self.access.component_limits:
            gateway.meter = Meter(self.access, self.prices)  # no ledger: the records only count TPM

    async def govern(self, gateway: Governed) -> None:
        """Budgets and the response cache on the gateway (after `start`: the budgets hear the meter's records)."""
        await self.spending.start(gateway, self.ledger)

    async def close(self) -> None:
        """After the server drained: write what is buffered, then close the store."""
        await self.spending.close()
        if self.ledger is not None:
            await self.ledger.close()
        await self.access.close()

    def status(self) -> dict[str, Any]:
        return self.ledger.status() if self.ledger is not None else {"state": "disabled"}


async def usage_report(settings: Settings, since: str, until: str | None, by: str, fmt: str) -> str:
    """`python -m rhetor usage`: the ledger's summary read straight from usage.db (no server needed)."""
    groups = parse_group_by(by, "--by")
    start, end = time_range(since, until)
    path = settings.usage_db_path
    if not path.exists():
        return f"no usage recorded yet ({path} does not exist)\n"
    store = SqliteLedgerStore(path)
    await store.open()
    try:
        summary = await store.summary(UsageFilter(start, end), groups)
    finally:
        await store.close()
    if fmt == "csv":
        return to_csv(summary, groups)
    if fmt == "json":
        return orjson.dumps({"from": iso(start), "to": iso(end), "group_by": groups, **summary},
                            option=orjson.OPT_INDENT_2).decode() + "\n"
    return f"usage {iso(start)[:19]} .. {iso(end)[:19]} UTC\n" + to_table(summary, groups)


__all__ = ["Governance", "usage_report"]
