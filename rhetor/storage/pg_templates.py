"""User template versions on PostgreSQL: the TemplateRows protocol of rhetor.prompts.persist, shared by every
replica.

Same contract as the SQLite default: a version row is only inserted or deleted, never updated; `templates` holds
each template's active version. Two replicas adding the same (id, version) at once: the second gets
TemplateConflictError (409) and its TemplateStore re-reads. Knows SQL and the row shape; nothing of Jinja, HTTP
or the driver's pool (rhetor.storage.postgres holds it).
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from rhetor.errors import TemplateConflictError
from rhetor.prompts.persist import Row
from rhetor.storage.postgres import Database, Migrations

MIGRATIONS: Final[Migrations] = (
    (
        "CREATE TABLE templates (id TEXT PRIMARY KEY, active_version INTEGER NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE template_versions (id TEXT NOT NULL, version INTEGER NOT NULL, text TEXT NOT NULL, "
        "variables TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (id, version))",
    ),
)
_SET_ACTIVE = ("INSERT INTO templates VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET "
               "active_version = excluded.active_version, updated_at = excluded.updated_at")


class PostgresTemplateRows:
    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db, self._owns = db, owns

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("templates", MIGRATIONS)

    async def close(self) -> None:
        if self._owns:
            await self.db.close()

    async def load(self) -> tuple[list[Row], dict[str, int]]:
        async with self.db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch('SELECT id, version, text, variables, metadata, created_at FROM template_versions '
                                    'ORDER BY id COLLATE "C", version')
            active = await conn.fetch("SELECT id, active_version FROM templates")
        out: list[Row] = [(r[0], int(r[1]), r[2], orjson.loads(r[3]), orjson.loads(r[4]), r[5]) for r in rows]
        return out, {r[0]: int(r[1]) for r in active}

    async def add_version(self, row: Row, active: int, now: str) -> None:
        import asyncpg

        try:
            async with self.db.transaction() as conn:
                await conn.execute("INSERT INTO template_versions VALUES ($1, $2, $3, $4, $5, $6)", row[0], row[1],
                                   row[2], _json(row[3]), _json(row[4]), row[5])
                await conn.execute(_SET_ACTIVE, row[0], active, now)
        except asyncpg.UniqueViolationError:
            raise TemplateConflictError(f"template {row[0]!r} version {row[1]} was just written by another "
                                        "replica; read it again and retry") from None

    async def set_active(self, template_id: str, active: int, now: str) -> None:
        await self.db.execute(_SET_ACTIVE, template_id, active, now)

    async def delete(self, template_id: str) -> None:
        async with self.db.transaction() as conn:
            await conn.execute("DELETE FROM template_versions WHERE id = $1", template_id)
            await conn.execute("DELETE FROM templates WHERE id = $1", template_id)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


__all__ = ["MIGRATIONS", "PostgresTemplateRows"]
