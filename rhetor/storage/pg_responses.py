"""The Responses API's response index on PostgreSQL (the ResponseIndex protocol of rhetor.context.responses):
a response id created on one replica is continued (`previous_response_id`) or read on any other.

Same contract as the SQLite default: `put` replaces a row with the same id. Knows SQL and StoredResponse; nothing
of HTTP, the Responses wire format or the driver's pool.
"""

from __future__ import annotations

import time
from typing import Final

import orjson

from rhetor.context.responses import StoredResponse
from rhetor.storage.postgres import Database, Migrations

MIGRATIONS: Final[Migrations] = (
    (
        "CREATE TABLE responses (id TEXT PRIMARY KEY, context_id TEXT NOT NULL, message_count INTEGER NOT NULL, "
        "created_at DOUBLE PRECISION NOT NULL, body TEXT NOT NULL, input_items TEXT NOT NULL)",
        "CREATE INDEX responses_by_context ON responses(context_id)",
    ),
)


class PostgresResponseIndex:
    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db, self._owns = db, owns

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("responses", MIGRATIONS)

    async def close(self) -> None:
        if self._owns:
            await self.db.close()

    async def put(self, response: StoredResponse) -> None:
        await self.db.execute(
            "INSERT INTO responses (id, context_id, message_count, created_at, body, input_items) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET context_id = excluded.context_id, "
            "message_count = excluded.message_count, created_at = excluded.created_at, body = excluded.body, "
            "input_items = excluded.input_items",
            response.id, response.context_id, response.message_count, time.time(),
            orjson.dumps(response.body).decode(), orjson.dumps(response.input_items).decode())

    async def get(self, response_id: str) -> StoredResponse | None:
        found = await self.db.fetchrow("SELECT id, context_id, message_count, body, input_items FROM responses "
                                       "WHERE id = $1", response_id)
        if found is None:
            return None
        return StoredResponse(found[0], found[1], int(found[2]), orjson.loads(found[3]), orjson.loads(found[4]))

    async def delete(self, response_id: str) -> bool:
        return await self.db.execute("DELETE FROM responses WHERE id = $1", response_id) != "DELETE 0"


__all__ = ["MIGRATIONS", "PostgresResponseIndex"]
