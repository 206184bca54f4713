"""The ContextStore on PostgreSQL: contexts and their messages shared by every replica.

Same contract as the SQLite default (rhetor.context.sqlite), held to it by one protocol test suite: a turn is one
transaction; the context's row is upserted first, which locks it, so concurrent turns on one context — from any
replica — serialize and message ids rise in insertion order within a context. Timestamps are stamped inside
that lock. Knows SQL and the context room's types; nothing of HTTP, routing or the driver's pool (rhetor.storage
.postgres holds it).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Final

import orjson

from rhetor.context.sqlite import _encode_turn
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
from rhetor.errors import InvalidRequestError
from rhetor.providers.base import estimate_tokens
from rhetor.storage.postgres import Database, Migrations

# Append only, like every migration list: entry i moves the `contexts` store from version i to i + 1.
MIGRATIONS: Final[Migrations] = (
    (
        "CREATE TABLE contexts (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
        "metadata TEXT NOT NULL DEFAULT '{}')",
        "CREATE TABLE messages (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "context_id TEXT NOT NULL REFERENCES contexts(id) ON DELETE CASCADE, turn INTEGER NOT NULL, "
        "role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL, timestamp TEXT NOT NULL, "
        "metadata TEXT NOT NULL DEFAULT '{}')",
        "CREATE INDEX messages_by_context ON messages(context_id, id)",
    ),
)
_COLUMNS = "id, role, content, status, timestamp, metadata"


class PostgresContextStore:
    """ContextStore on a shared `Database` (opened by whoever owns it, or by `open` here)."""

    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db, self._owns = db, owns

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("contexts", MIGRATIONS)

    async def close(self) -> None:
        if self._owns:
            await self.db.close()

    async def append_turn(self, context_id: str, messages: list[NewMessage], *, status: str = "complete") -> None:
        cid = validate_context_id(context_id)
        validate_status(status)
        rows = _encode_turn(messages)
        meta = orjson.dumps({"component": comp} if (comp := component_of(cid)) else {}).decode()
        async with self.db.transaction() as conn:
            now = utc_now()
            await conn.execute(
                "INSERT INTO contexts (id, created_at, updated_at, metadata) VALUES ($1, $2, $2, $3) "
                "ON CONFLICT (id) DO UPDATE SET updated_at = excluded.updated_at", cid, now, meta)
            last = await conn.fetchval(
                "SELECT turn FROM messages WHERE context_id = $1 ORDER BY id DESC LIMIT 1", cid)
            turn = (int(last) if last is not None else 0) + 1
            stamped = [(cid, turn, role, content, status, utc_now(), md) for role, content, md in rows]
            await conn.executemany(
                "INSERT INTO messages (context_id, turn, role, content, status, timestamp, metadata) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)", stamped)

    async def history(self, context_id: str, *, complete_only: bool = True) -> list[StoredMessage]:
        cid = validate_context_id(context_id)
        where = "context_id = $1 AND status = 'complete'" if complete_only else "context_id = $1"
        rows = await self.db.fetch(f"SELECT {_COLUMNS} FROM messages WHERE {where} ORDER BY id", cid)
        return [_message(r) for r in rows]

    async def page(self, context_id: str, *, offset: int = 0, limit: int = 50) -> tuple[list[StoredMessage], int]:
        cid = validate_context_id(context_id)
        if offset < 0:
            raise InvalidRequestError("offset must be >= 0", param="offset")
        if limit < 0:
            raise InvalidRequestError("limit must be >= 0", param="limit")
        async with self.db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            total = await conn.fetchval("SELECT COUNT(*) FROM messages WHERE context_id = $1", cid)
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM messages WHERE context_id = $1 ORDER BY id "
                                    "LIMIT $2 OFFSET $3", cid, limit, offset)
        return [_message(r) for r in rows], int(total)

    async def list_contexts(self) -> list[ContextSummary]:
        return await self._summaries(None)

    async def get_summary(self, context_id: str) -> ContextSummary | None:
        found = await self._summaries(validate_context_id(context_id))
        return found[0] if found else None

    async def delete(self, context_id: str) -> bool:
        cid = validate_context_id(context_id)
        return await self.db.execute("DELETE FROM contexts WHERE id = $1", cid) != "DELETE 0"

    async def export(self, context_id: str) -> dict[str, Any] | None:
        cid = validate_context_id(context_id)
        async with self.db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            found = await conn.fetchrow("SELECT created_at, updated_at, metadata FROM contexts WHERE id = $1", cid)
            if found is None:
                return None
            rows = await conn.fetch(f"SELECT {_COLUMNS} FROM messages WHERE context_id = $1 ORDER BY id", cid)
        messages = [_message(r) for r in rows]
        return {
            "context_id": cid,
            "created_at": found[0],
            "updated_at": found[1],
            "messages": [asdict(m) for m in messages],
            "summaries": [],
            "metadata": orjson.loads(found[2]),
            "total_token_count": sum(estimate_tokens(m.content) for m in messages),
            "max_tokens": R1_MAX_TOKENS,
            "archived_messages": [],
        }

    async def _summaries(self, cid: str | None) -> list[ContextSummary]:
        where = "WHERE c.id = $1" if cid is not None else ""
        rows = await self.db.fetch(
            "SELECT c.id, c.created_at, c.updated_at, c.metadata, COUNT(m.id) FROM contexts c "
            f"LEFT JOIN messages m ON m.context_id = c.id {where} "
            'GROUP BY c.id ORDER BY c.updated_at COLLATE "C" DESC, c.id COLLATE "C"', *(() if cid is None else (cid,)))
        return [ContextSummary(r[0], r[1], r[2], int(r[4]), orjson.loads(r[3]).get("component")) for r in rows]


def _message(row: Any) -> StoredMessage:
    msg_id, role, content, status, timestamp, meta = tuple(row)
    metadata: dict[str, Any] = orjson.loads(meta)
    metadata["status"] = status
    return StoredMessage(id=int(msg_id), role=role, content=content, timestamp=timestamp, metadata=metadata)


__all__ = ["MIGRATIONS", "PostgresContextStore"]
