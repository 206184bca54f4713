"""Budget definitions on PostgreSQL (the BudgetStore protocol of rhetor.governance.budget_store): one JSON row
per budget, shared by every replica. Spend is not kept here: it is seeded from the shared usage ledger and
counted live (rhetor.governance.budgets; shared counters are Redis's). Knows SQL and Budget; nothing of HTTP
or the driver's pool.
"""

from __future__ import annotations

import time
from typing import Final

import orjson

from rhetor.governance.budgets import Budget
from rhetor.storage.postgres import Database, Migrations

MIGRATIONS: Final[Migrations] = (
    ("CREATE TABLE budgets (id TEXT PRIMARY KEY, definition TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL)",),
)


class PostgresBudgetStore:
    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db, self._owns = db, owns

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("budgets", MIGRATIONS)

    async def close(self) -> None:
        if self._owns:
            await self.db.close()

    async def load(self) -> list[Budget]:
        rows = await self.db.fetch('SELECT definition FROM budgets ORDER BY id COLLATE "C"')
        return [Budget.model_validate(orjson.loads(r[0])) for r in rows]

    async def save(self, budget: Budget) -> None:
        await self.db.execute("INSERT INTO budgets (id, definition, updated_at) VALUES ($1, $2, $3) ON CONFLICT (id) "
                              "DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at",
                              budget.id, orjson.dumps(budget.model_dump(exclude_none=True)).decode(), time.time())

    async def delete(self, budget_id: str) -> bool:
        return await self.db.execute("DELETE FROM budgets WHERE id = $1", budget_id) != "DELETE 0"


__all__ = ["MIGRATIONS", "PostgresBudgetStore"]
