"""Persistence of user-made template versions: `templates.db` (SQLite, WAL) in RHETOR_DATA_DIR, driven from one
dedicated worker thread so the event loop never blocks and writes are serialized.

Version rows are only ever inserted or deleted, never updated: a version is immutable. `templates` holds one
row per template with user data — its active version. The schema comes from the ordered `MIGRATIONS` list,
tracked with `PRAGMA user_version`. Ids are bound parameters, never file names. Knows nothing of Jinja or HTTP.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from rhetor.errors import ConfigError

T = TypeVar("T")

# Append only: each entry moves the schema from version i to i + 1. Never edit an entry once released.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "CREATE TABLE templates (id TEXT PRIMARY KEY, active_version INTEGER NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE TABLE template_versions (id TEXT NOT NULL, version INTEGER NOT NULL, text TEXT NOT NULL, "
        "variables TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (id, version))",
    ),
)

Row = tuple[str, int, str, dict[str, Any], dict[str, Any], str]  # id, version, text, variables, metadata, created


class TemplateDB:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used on the worker thread only

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rhetor-templates")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            executor.shutdown(wait=True)

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            raise ConfigError("the template store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open the template store at {self.path}: {exc}") from None
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current > len(MIGRATIONS):
            conn.close()
            raise ConfigError(f"{self.path} has schema version {current}, newer than this Rhetor knows "
                              f"({len(MIGRATIONS)}); upgrade Rhetor")
        for index in range(current, len(MIGRATIONS)):
            conn.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[index]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {index + 1}")
            conn.execute("COMMIT")
        self._conn = conn

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    async def load(self) -> tuple[list[Row], dict[str, int]]:
        def work() -> tuple[list[Row], dict[str, int]]:
            db = self._db()
            rows = [(r[0], r[1], r[2], orjson.loads(r[3]), orjson.loads(r[4]), r[5]) for r in db.execute(
                "SELECT id, version, text, variables, metadata, created_at FROM template_versions "
                "ORDER BY id, version")]
            active = {r[0]: r[1] for r in db.execute("SELECT id, active_version FROM templates")}
            return rows, active

        return await self._run(work)

    async def add_version(self, row: Row, active: int, now: str) -> None:
        def work() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT INTO template_versions VALUES (?, ?, ?, ?, ?, ?)",
                           (row[0], row[1], row[2], orjson.dumps(row[3]).decode(), orjson.dumps(row[4]).decode(),
                            row[5]))
                _set_active(db, row[0], active, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

        await self._run(work)

    async def set_active(self, template_id: str, active: int, now: str) -> None:
        await self._run(lambda: _set_active(self._db(), template_id, active, now))

    async def delete(self, template_id: str) -> None:
        def work() -> None:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM template_versions WHERE id = ?", (template_id,))
            db.execute("DELETE FROM templates WHERE id = ?", (template_id,))
            db.execute("COMMIT")

        await self._run(work)


def _set_active(db: sqlite3.Connection, template_id: str, active: int, now: str) -> None:
    db.execute("INSERT INTO templates VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
               "active_version = excluded.active_version, updated_at = excluded.updated_at",
               (template_id, active, now))


__all__ = ["MIGRATIONS", "Row", "TemplateDB"]
