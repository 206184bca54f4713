"""Small named values shared by every replica, on PostgreSQL: today the legacy front's default provider and
model (`POST /provider`), which the embedded default keeps in `legacy_provider.json` in the data dir.

A value is one JSON document per name; `get` reads the row, `put` replaces it. Knows SQL; nothing of HTTP, the
legacy front or the driver's pool.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from rhetor.storage.postgres import Database, Migrations

MIGRATIONS: Final[Migrations] = (
    ("CREATE TABLE rhetor_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL, "
     "updated_at DOUBLE PRECISION NOT NULL)",),
)


class PostgresSettingStore:
    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db, self._owns = db, owns

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("settings", MIGRATIONS)

    async def close(self) -> None:
        if self._owns:
            await self.db.close()

    async def get(self, name: str) -> Any:
        """The value stored under `name`, or None."""
        found = await self.db.fetchval("SELECT value FROM rhetor_settings WHERE name = $1", name)
        return None if found is None else orjson.loads(found)

    async def put(self, name: str, value: Any) -> None:
        await self.db.execute("INSERT INTO rhetor_settings (name, value, updated_at) VALUES ($1, $2, $3) "
                              "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
                              "updated_at = excluded.updated_at", name, orjson.dumps(value).decode(), time.time())


__all__ = ["MIGRATIONS", "PostgresSettingStore"]
