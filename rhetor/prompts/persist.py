"""Persistence of user-made template versions: `templates.db` (SQLite, WAL) in RHETOR_DATA_DIR, driven from one
worker thread (rhetor.sqlite_worker) so the event loop never blocks and writes are serialized.

Version rows are only ever inserted or deleted, never updated: a version is immutable. `templates` holds one
row per template with user data — its active version. The schema comes from the ordered `MIGRATIONS` list,
tracked with `PRAGMA user_version`. Ids are bound parameters, never file names. Knows nothing of Jinja or HTTP.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from rhetor.errors import TemplateConflictError
from rhetor.sqlite_worker import SqliteWorker, immediate

# Append only: each entry moves the schema from version i to i + 1. Never edit an entry once released.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "CREATE TABLE templates (id TEXT PRIMARY KEY, active_version INTEGER NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE template_versions (id TEXT NOT NULL, version INTEGER NOT NULL, text TEXT NOT NULL, "
        "variables TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (id, version))",
    ),
)

Row = tuple[str, int, str, dict[str, Any], dict[str, Any], str]  # id, version, text, variables, metadata, created


class TemplateRows(Protocol):
    """Where user template versions persist: this SQLite file by default, PostgreSQL (rhetor.storage.pg_templates)
    when RHETOR_DATABASE_URL is set. `add_version` of an (id, version) that already exists raises
    TemplateConflictError (another replica wrote it first)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def load(self) -> tuple[list[Row], dict[str, int]]: ...

    async def add_version(self, row: Row, active: int, now: str) -> None: ...

    async def set_active(self, template_id: str, active: int, now: str) -> None: ...

    async def delete(self, template_id: str) -> None: ...


class TemplateDB:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = SqliteWorker(self.path, MIGRATIONS, label="template store")

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def load(self) -> tuple[list[Row], dict[str, int]]:
        def work(db: sqlite3.Connection) -> tuple[list[Row], dict[str, int]]:
            rows = [(r[0], r[1], r[2], orjson.loads(r[3]), orjson.loads(r[4]), r[5]) for r in db.execute(
                "SELECT id, version, text, variables, metadata, created_at FROM template_versions "
                "ORDER BY id, version")]
            active = {r[0]: r[1] for r in db.execute("SELECT id, active_version FROM templates")}
            return rows, active

        return await self._db.run(work)

    async def add_version(self, row: Row, active: int, now: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            try:
                with immediate(db):
                    db.execute("INSERT INTO template_versions VALUES (?, ?, ?, ?, ?, ?)",
                               (row[0], row[1], row[2], orjson.dumps(row[3]).decode(),
                                orjson.dumps(row[4]).decode(), row[5]))
                    _set_active(db, row[0], active, now)
            except sqlite3.IntegrityError:  # another process on this data dir wrote it first
                raise TemplateConflictError(f"template {row[0]!r} version {row[1]} was just written by another "
                                            "process; read it again and retry") from None

        await self._db.run(work)

    async def set_active(self, template_id: str, active: int, now: str) -> None:
        await self._db.run(lambda db: _set_active(db, template_id, active, now))

    async def delete(self, template_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            with immediate(db):
                db.execute("DELETE FROM template_versions WHERE id = ?", (template_id,))
                db.execute("DELETE FROM templates WHERE id = ?", (template_id,))

        await self._db.run(work)


def _set_active(db: sqlite3.Connection, template_id: str, active: int, now: str) -> None:
    db.execute("INSERT INTO templates VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
               "active_version = excluded.active_version, updated_at = excluded.updated_at",
               (template_id, active, now))


__all__ = ["MIGRATIONS", "Row", "TemplateDB", "TemplateRows"]
