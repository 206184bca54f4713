"""The KeyStore on PostgreSQL: caller keys shared by every replica (only a key's SHA-256, never its secret).

Same contract as the SQLite default (rhetor.governance.keystore): every write bumps a generation counter in the
same transaction, so each replica's poller (and the Redis change channel, when configured) sees a change by
reading one row. Knows SQL and KeyRecord; nothing of HTTP, the ring or the gateway.
"""

from __future__ import annotations

import time
from typing import Any, Final

import orjson

from rhetor.governance.keys import KeyRecord
from rhetor.storage.postgres import Database, Migrations

MIGRATIONS: Final[Migrations] = (
    (
        "CREATE TABLE keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, digest BYTEA NOT NULL UNIQUE, "
        "hint TEXT NOT NULL, spec TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
        "updated_at DOUBLE PRECISION, revoked_at DOUBLE PRECISION)",
        "CREATE TABLE keys_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL)",
        "INSERT INTO keys_generation VALUES (1, 0)",
    ),
)
_COLUMNS = "id, name, digest, hint, spec, created_at, updated_at, revoked_at"
_BUMP = "UPDATE keys_generation SET value = value + 1 WHERE id = 1"


def _record(row: Any) -> KeyRecord:
    return KeyRecord(id=row[0], name=row[1], digest=bytes(row[2]), hint=row[3], spec=orjson.loads(row[4]),
                     created_at=row[5], updated_at=row[6], revoked_at=row[7])


class PostgresKeyStore:
    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db, self._owns = db, owns

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("keys", MIGRATIONS)

    async def close(self) -> None:
        if self._owns:
            await self.db.close()

    async def all(self) -> list[KeyRecord]:
        rows = await self.db.fetch(f'SELECT {_COLUMNS} FROM keys ORDER BY created_at, id COLLATE "C"')
        return [_record(r) for r in rows]

    async def get(self, key_id: str) -> KeyRecord | None:
        row = await self.db.fetchrow(f"SELECT {_COLUMNS} FROM keys WHERE id = $1", key_id)
        return None if row is None else _record(row)

    async def create(self, record: KeyRecord) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(f"INSERT INTO keys ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                               record.id, record.name, record.digest, record.hint,
                               orjson.dumps(record.spec).decode(), record.created_at, record.updated_at,
                               record.revoked_at)
            await conn.execute(_BUMP)

    async def _change(self, key_id: str, sql: str, *args: Any) -> KeyRecord | None:
        async with self.db.transaction() as conn:
            row = await conn.fetchrow(f"{sql} RETURNING {_COLUMNS}", *args, key_id)
            if row is None:
                return None
            await conn.execute(_BUMP)
        return _record(row)

    async def update(self, key_id: str, name: str | None, spec: dict[str, Any]) -> KeyRecord | None:
        return await self._change(key_id, "UPDATE keys SET name = COALESCE($1, name), spec = $2, updated_at = $3 "
                                          "WHERE id = $4 AND revoked_at IS NULL",
                                  name, orjson.dumps(spec).decode(), time.time())

    async def revoke(self, key_id: str) -> KeyRecord | None:
        now = time.time()
        return await self._change(key_id, "UPDATE keys SET revoked_at = COALESCE(revoked_at, $1), updated_at = $2 "
                                          "WHERE id = $3", now, now)

    async def rotate(self, key_id: str, digest: bytes, hint: str) -> KeyRecord | None:
        return await self._change(key_id, "UPDATE keys SET digest = $1, hint = $2, updated_at = $3 "
                                          "WHERE id = $4 AND revoked_at IS NULL", digest, hint, time.time())

    async def generation(self) -> int:
        return int(await self.db.fetchval("SELECT value FROM keys_generation WHERE id = 1") or 0)


__all__ = ["MIGRATIONS", "PostgresKeyStore"]
