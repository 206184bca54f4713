"""Where budgets and their spend come from at start: budget definitions made through the API, kept in
`$RHETOR_DATA_DIR/budgets.db` (SQLite, one JSON row per budget, behind the `BudgetStore` protocol); the global
budget of the original environment variables (RHETOR_BUDGET_POLICY, RHETOR_BUDGET_{DAILY,WEEKLY,MONTHLY}_LIMIT);
and the spend already in the usage ledger for the current day, week and month (`seed_spend`), so a restart does
not forget what was spent. Knows SQL, Settings and budget definitions; nothing of HTTP or the hot path.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Protocol

import orjson

from rhetor.errors import ConfigError, InvalidRequestError
from rhetor.governance.budgets import GLOBAL, PERIODS, Budget, BudgetBook, Subject, parse_budget, period_bounds
from rhetor.governance.ledger import LedgerStore
from rhetor.settings import Settings
from rhetor.sqlite_worker import Migrations, SqliteWorker, immediate

ENV_BUDGET_ID = "global"
MIGRATIONS: Migrations = [
    ["CREATE TABLE budgets (id TEXT PRIMARY KEY, definition TEXT NOT NULL, updated_at REAL NOT NULL)"],
]
# subject scope -> the ledger's column
COLUMN = {"component": "component", "key": "key_id", "task": "task_type"}


class BudgetStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load(self) -> list[Budget]: ...

    async def save(self, budget: Budget) -> None: ...

    async def delete(self, budget_id: str) -> bool: ...


class SqliteBudgetStore:
    def __init__(self, path: Path) -> None:
        self.worker = SqliteWorker(path, MIGRATIONS, label="budget store")

    async def open(self) -> None:
        await self.worker.open()

    async def close(self) -> None:
        await self.worker.close()

    async def load(self) -> list[Budget]:
        rows = await self.worker.run(lambda c: c.execute("SELECT definition FROM budgets ORDER BY id").fetchall())
        return [Budget.model_validate(orjson.loads(r[0])) for r in rows]

    async def save(self, budget: Budget) -> None:
        data = orjson.dumps(budget.model_dump(exclude_none=True)).decode()

        def write(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.execute("INSERT INTO budgets (id, definition, updated_at) VALUES (?, ?, ?) ON CONFLICT(id) "
                             "DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
                             (budget.id, data, time.time()))

        await self.worker.run(write)

    async def delete(self, budget_id: str) -> bool:
        def remove(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                return conn.execute("DELETE FROM budgets WHERE id = ?", (budget_id,)).rowcount > 0

        return bool(await self.worker.run(remove))


def env_budget(settings: Settings) -> Budget | None:
    """The original global budget: RHETOR_BUDGET_{DAILY,WEEKLY,MONTHLY}_LIMIT under RHETOR_BUDGET_POLICY (R1's
    `enforce` is `downgrade` when RHETOR_BUDGET_DOWNGRADE_TO names a target, else `block`; `ignore` = none)."""
    limits = {"daily_usd": settings.budget_daily_limit, "weekly_usd": settings.budget_weekly_limit,
              "monthly_usd": settings.budget_monthly_limit}
    if settings.budget_policy == "ignore" or all(v is None for v in limits.values()):
        return None
    policy = settings.budget_policy
    if policy == "enforce":
        policy = "downgrade" if settings.budget_downgrade_to else "block"
    try:
        return _env_budget(settings, policy, limits)
    except InvalidRequestError as exc:
        names = {"downgrade_to": "RHETOR_BUDGET_DOWNGRADE_TO", "warn_at": "RHETOR_BUDGET_WARN_AT"}
        raise ConfigError(f"{names.get(exc.param or '', 'RHETOR_BUDGET_POLICY')}: {exc.message}") from None


def _env_budget(settings: Settings, policy: str, limits: dict[str, float | None]) -> Budget:
    return parse_budget({"id": ENV_BUDGET_ID, "scope": "global", "policy": policy, "warn_at": settings.budget_warn_at,
                         "description": "from RHETOR_BUDGET_* (environment)",
                         "downgrade_to": settings.budget_downgrade_to if policy == "downgrade" else None,
                         **{k: v for k, v in limits.items() if v is not None}})


async def seed_spend(book: BudgetBook, ledger: LedgerStore, subjects: list[Subject], now: float | None = None) -> None:
    """Add the spend the ledger already holds for this day / week / month to each subject's windows (started
    before `now`; requests that end later are counted live)."""
    now = time.time() if now is None else now
    starts = [period_bounds(p, now)[0] for p in PERIODS]  # type: ignore[arg-type]
    for subject in subjects:
        if subject != GLOBAL and subject[0] not in COLUMN:
            continue
        column, value = (None, None) if subject == GLOBAL else (COLUMN[subject[0]], subject[1])
        row = await ledger.spend(column, value, starts, now)
        for i, period in enumerate(PERIODS):
            w = book.counters.window(subject, period, now)  # type: ignore[arg-type]
            w.usd += float(row[2 * i])
            w.tokens += int(row[2 * i + 1])


__all__ = ["ENV_BUDGET_ID", "BudgetStore", "SqliteBudgetStore", "env_budget", "seed_spend"]
