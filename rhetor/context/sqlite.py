"""The embedded default ContextStore: one SQLite file (WAL), driven from one dedicated worker thread.

Every blocking sqlite3 call runs on one worker thread (rhetor.sqlite_worker), so the event loop never blocks
and writes are serialized; each turn is one `BEGIN IMMEDIATE` transaction, so concurrent turns on one context never
interleave and a failed turn leaves nothing behind. The schema comes from the ordered `MIGRATIONS` list,
tracked with `PRAGMA user_version`. Context ids are bound parameters, never file names. This module knows
nothing of providers, routing or HTTP.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final, TypeVar

import orjson

from rhetor.context.store import (
    R1_MAX_TOKENS,
    ContextSummary,
    NewMessage,
    StoredMessage,
    component_of,
    utc_now,
    validate_context_id,
    validate_status,
)
from rhetor.context.vectors import MEMORY_SCHEMA
from rhetor.errors import InvalidRequestError
from rhetor.providers.base import estimate_tokens
from rhetor.sqlite_worker import SqliteWorker, immediate

T = TypeVar("T")

# Append only: each entry moves the schema from version i to i + 1. Never edit an entry once released.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "CREATE TABLE contexts (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
        "metadata TEXT NOT NULL DEFAULT '{}')",
        "CREATE TABLE messages (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "context_id TEXT NOT NULL REFERENCES contexts(id) ON DELETE CASCADE, turn INTEGER NOT NULL, "
        "role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL, timestamp TEXT NOT NULL, "
        "metadata TEXT NOT NULL DEFAULT '{}')",
        "CREATE INDEX messages_by_context ON messages(context_id, id)",
    ),
    MEMORY_SCHEMA,  # 2: message vectors and the FTS5 lexical index (statements in rhetor/context/vectors.py)
)

_MESSAGE_COLUMNS = "id, role, content, status, timestamp, metadata"
_Row = tuple[str, str, str]  # role, content, metadata JSON


class SqliteContextStore:
    """ContextStore on a SQLite file at `path` (parent directories are created on `open`)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = SqliteWorker(self.path, MIGRATIONS, label="context store")

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def append_turn(
        self, context_id: str, messages: list[NewMessage], *, status: str = "complete"
    ) -> None:
        cid = validate_context_id(context_id)
        validate_status(status)
        rows = _encode_turn(messages)
        meta = orjson.dumps({"component": comp} if (comp := component_of(cid)) else {}).decode()
        await self._run(lambda conn: _append(conn, cid, meta, rows, status))

    async def history(self, context_id: str, *, complete_only: bool = True) -> list[StoredMessage]:
        cid = validate_context_id(context_id)
        where = "context_id = ? AND status = 'complete'" if complete_only else "context_id = ?"
        sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE {where} ORDER BY id"
        return await self._run(lambda conn: [_message(r) for r in conn.execute(sql, (cid,))])

    async def page(
        self, context_id: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[StoredMessage], int]:
        cid = validate_context_id(context_id)
        if offset < 0:
            raise InvalidRequestError("offset must be >= 0", param="offset")
        if limit < 0:
            raise InvalidRequestError("limit must be >= 0", param="limit")
        return await self._run(lambda conn: _page(conn, cid, offset, limit))

    async def list_contexts(self) -> list[ContextSummary]:
        return await self._run(lambda conn: _summaries(conn, None))

    async def get_summary(self, context_id: str) -> ContextSummary | None:
        cid = validate_context_id(context_id)
        found = await self._run(lambda conn: _summaries(conn, cid))
        return found[0] if found else None

    async def delete(self, context_id: str) -> bool:
        cid = validate_context_id(context_id)
        return await self._run(lambda conn: _delete(conn, cid))

    async def export(self, context_id: str) -> dict[str, Any] | None:
        cid = validate_context_id(context_id)
        return await self._run(lambda conn: _export(conn, cid))

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the store's worker; sibling modules (vectors, retrieval) keep their own queries."""
        return await self._db.run(fn)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(fn)


@contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction, so a count and the rows it counts come from the same state."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")  # nothing was written; ending the read is all that is needed


def _encode_turn(messages: list[NewMessage]) -> list[_Row]:
    """Validate and serialize a turn before any transaction starts, so bad input never half-writes."""
    if not messages:
        raise InvalidRequestError("a turn needs at least one message", param="messages")
    rows: list[_Row] = []
    for i, m in enumerate(messages):
        if not isinstance(m.role, str) or not m.role:
            raise InvalidRequestError(f"messages[{i}].role must be a non-empty string", param="messages")
        if not isinstance(m.content, str):
            raise InvalidRequestError(f"messages[{i}].content must be a string", param="messages")
        try:
            meta = orjson.dumps(m.metadata).decode()
        except TypeError as exc:
            raise InvalidRequestError(
                f"messages[{i}].metadata is not JSON-serializable: {exc}", param="messages"
            ) from None
        rows.append((m.role, m.content, meta))
    return rows


def _append(conn: sqlite3.Connection, cid: str, meta: str, rows: list[_Row], status: str) -> None:
    # Stamped here, on the worker, so timestamps rise with message ids even under concurrent turns.
    stamped = [(role, content, status, utc_now(), md) for role, content, md in rows]
    now = stamped[-1][3]
    with immediate(conn):
        conn.execute(
            "INSERT INTO contexts (id, created_at, updated_at, metadata) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET updated_at = excluded.updated_at",
            (cid, now, now, meta),
        )
        # Turns rise with ids, so the newest message holds the highest: one step down messages_by_context,
        # whatever the length of the history (MAX(turn) would read every message of the context).
        last = conn.execute(
            "SELECT turn FROM messages WHERE context_id = ? ORDER BY id DESC LIMIT 1", (cid,)
        ).fetchone()
        turn = (int(last[0]) if last else 0) + 1
        conn.executemany(
            "INSERT INTO messages (context_id, turn, role, content, status, timestamp, metadata) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(cid, turn, *row) for row in stamped],
        )


def _message(row: tuple[Any, ...]) -> StoredMessage:
    msg_id, role, content, status, timestamp, meta = row
    metadata: dict[str, Any] = orjson.loads(meta)
    metadata["status"] = status
    return StoredMessage(id=msg_id, role=role, content=content, timestamp=timestamp, metadata=metadata)


def _page(conn: sqlite3.Connection, cid: str, offset: int, limit: int) -> tuple[list[StoredMessage], int]:
    with _snapshot(conn):
        (total,) = conn.execute("SELECT COUNT(*) FROM messages WHERE context_id = ?", (cid,)).fetchone()
        rows = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE context_id = ? ORDER BY id LIMIT ? OFFSET ?",
            (cid, limit, offset),
        ).fetchall()
    return [_message(r) for r in rows], int(total)


def _summaries(conn: sqlite3.Connection, cid: str | None) -> list[ContextSummary]:
    where = "WHERE c.id = ?" if cid is not None else ""
    rows = conn.execute(
        "SELECT c.id, c.created_at, c.updated_at, c.metadata, COUNT(m.id) FROM contexts c "
        f"LEFT JOIN messages m ON m.context_id = c.id {where} "
        "GROUP BY c.id ORDER BY c.updated_at DESC, c.id",
        () if cid is None else (cid,),
    ).fetchall()
    out = []
    for context_id, created, updated, meta, count in rows:
        component = orjson.loads(meta).get("component")
        out.append(ContextSummary(context_id, created, updated, int(count), component))
    return out


def _delete(conn: sqlite3.Connection, cid: str) -> bool:
    with immediate(conn):
        deleted = conn.execute("DELETE FROM contexts WHERE id = ?", (cid,)).rowcount
    return deleted > 0


def _export(conn: sqlite3.Connection, cid: str) -> dict[str, Any] | None:
    with _snapshot(conn):
        found = conn.execute(
            "SELECT created_at, updated_at, metadata FROM contexts WHERE id = ?", (cid,)
        ).fetchone()
        if found is None:
            return None
        rows = conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE context_id = ? ORDER BY id", (cid,)
        ).fetchall()
    created, updated, meta = found
    messages = [_message(r) for r in rows]
    return {
        "context_id": cid,
        "created_at": created,
        "updated_at": updated,
        "messages": [asdict(m) for m in messages],
        "summaries": [],
        "metadata": orjson.loads(meta),
        "total_token_count": sum(estimate_tokens(m.content) for m in messages),
        "max_tokens": R1_MAX_TOKENS,
        "archived_messages": [],
    }


__all__ = ["MIGRATIONS", "SqliteContextStore"]
