"""The response index of the OpenAI Responses API: a response id maps to the context that holds its
conversation and to how far into that context it reaches (`message_count`: the context's messages up to and
including this response's turn), plus the stored response object and its input items for GET and listing.

The conversation itself lives in the ContextStore (the items ride in each message's metadata); this index
holds only the pointers and the objects echoed back, in its own SQLite file (`responses.db`) or on PostgreSQL,
so it survives a restart. Knows SQL and JSON; nothing of HTTP, the Responses wire format or providers.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import orjson

from rhetor.sqlite_worker import SqliteWorker, immediate

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "CREATE TABLE responses (id TEXT PRIMARY KEY, context_id TEXT NOT NULL, message_count INTEGER NOT NULL, "
        "created_at REAL NOT NULL, body TEXT NOT NULL, input_items TEXT NOT NULL)",
        "CREATE INDEX responses_by_context ON responses(context_id)",
    ),
)


@dataclass(slots=True)
class StoredResponse:
    id: str
    context_id: str
    message_count: int
    body: dict[str, Any]
    input_items: list[dict[str, Any]]


class ResponseIndex(Protocol):
    """Response id -> (context id, message count, response object, input items): SQLite by default
    (SqliteResponseIndex), PostgreSQL when RHETOR_DATABASE_URL is set (rhetor.storage.pg_responses)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, response: StoredResponse) -> None: ...

    async def get(self, response_id: str) -> StoredResponse | None: ...

    async def delete(self, response_id: str) -> bool: ...


class SqliteResponseIndex:
    """ResponseIndex in a SQLite file at `path`."""

    def __init__(self, path: Path) -> None:
        self._db = SqliteWorker(Path(path), MIGRATIONS, label="response index")

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def put(self, response: StoredResponse) -> None:
        row = (response.id, response.context_id, response.message_count, time.time(),
               orjson.dumps(response.body).decode(), orjson.dumps(response.input_items).decode())

        def write(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.execute("INSERT OR REPLACE INTO responses (id, context_id, message_count, created_at, body, "
                             "input_items) VALUES (?, ?, ?, ?, ?, ?)", row)

        await self._db.run(write)

    async def get(self, response_id: str) -> StoredResponse | None:
        def read(conn: sqlite3.Connection) -> StoredResponse | None:
            found = conn.execute("SELECT id, context_id, message_count, body, input_items FROM responses "
                                 "WHERE id = ?", (response_id,)).fetchone()
            if found is None:
                return None
            rid, cid, count, body, items = found
            return StoredResponse(rid, cid, int(count), orjson.loads(body), orjson.loads(items))

        return await self._db.run(read)

    async def delete(self, response_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                return conn.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0

        return await self._db.run(write)


__all__ = ["MIGRATIONS", "ResponseIndex", "SqliteResponseIndex", "StoredResponse"]
