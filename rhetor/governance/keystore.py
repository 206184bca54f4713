"""Where caller keys live: the `KeyStore` protocol and its SQLite default (`$RHETOR_DATA_DIR/keys.db`, WAL, on the
shared one-thread SqliteWorker). Only a key's SHA-256 is stored, never its secret. Every write bumps a
generation counter, so other processes (another worker, `python -m rhetor keys`) see a change by polling one
row — read only when the files changed (`generation`). Knows SQL and KeyRecord; nothing of HTTP, the ring or the
gateway.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Protocol

import orjson

from rhetor.governance.keys import KeyRecord
from rhetor.sqlite_worker import Migrations, SqliteWorker, immediate

MIGRATIONS: Migrations = [
    [
        """CREATE TABLE keys (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, digest BLOB NOT NULL UNIQUE, hint TEXT NOT NULL,
            spec TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL, revoked_at REAL)""",
        "CREATE TABLE keys_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)",
        "INSERT INTO keys_generation VALUES (1, 0)",
    ],
]
_COLUMNS = "id, name, digest, hint, spec, created_at, updated_at, revoked_at"
_BUMP = "UPDATE keys_generation SET value = value + 1 WHERE id = 1"
RACY_NS = 2_000_000_000  # a file modified this recently may change again without its timestamp moving


class KeyStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def all(self) -> list[KeyRecord]: ...

    async def get(self, key_id: str) -> KeyRecord | None: ...

    async def create(self, record: KeyRecord) -> None: ...

    async def update(self, key_id: str, name: str | None, spec: dict[str, Any]) -> KeyRecord | None: ...

    async def revoke(self, key_id: str) -> KeyRecord | None: ...

    async def rotate(self, key_id: str, digest: bytes, hint: str) -> KeyRecord | None: ...

    async def generation(self) -> int: ...


def _record(row: tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(id=row[0], name=row[1], digest=bytes(row[2]), hint=row[3], spec=orjson.loads(row[4]),
                     created_at=row[5], updated_at=row[6], revoked_at=row[7])


def _get(conn: sqlite3.Connection, key_id: str) -> KeyRecord | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM keys WHERE id = ?", (key_id,)).fetchone()
    return None if row is None else _record(row)


class SqliteKeyStore:
    def __init__(self, path: Path) -> None:
        self._db = SqliteWorker(path, MIGRATIONS, label="key store")
        self._files = (str(path), str(path) + "-wal")
        self._stamp_seen: tuple[tuple[int, int, int] | None, ...] | None = None
        self._generation: int | None = None  # as last read, while the files' stamp stays _stamp_seen

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def all(self) -> list[KeyRecord]:
        def read(conn: sqlite3.Connection) -> list[KeyRecord]:
            return [_record(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created_at, id")]

        return await self._db.run(read)

    async def get(self, key_id: str) -> KeyRecord | None:
        return await self._db.run(lambda conn: _get(conn, key_id))

    async def create(self, record: KeyRecord) -> None:
        def write(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.execute(f"INSERT INTO keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (record.id, record.name, record.digest, record.hint, orjson.dumps(record.spec).decode(),
                              record.created_at, record.updated_at, record.revoked_at))
                conn.execute(_BUMP)

        await self._db.run(write)

    async def _change(self, key_id: str, sql: str, args: tuple[Any, ...]) -> KeyRecord | None:
        def write(conn: sqlite3.Connection) -> KeyRecord | None:
            with immediate(conn):
                if conn.execute(sql, (*args, key_id)).rowcount == 0:
                    return None
                conn.execute(_BUMP)
            return _get(conn, key_id)

        return await self._db.run(write)

    async def update(self, key_id: str, name: str | None, spec: dict[str, Any]) -> KeyRecord | None:
        return await self._change(key_id, "UPDATE keys SET name = COALESCE(?, name), spec = ?, updated_at = ? "
                                          "WHERE id = ? AND revoked_at IS NULL",
                                  (name, orjson.dumps(spec).decode(), time.time()))

    async def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoked keys stay listed (the ledger names them); revoking twice is a no-op that still answers."""
        now = time.time()
        return await self._change(key_id, "UPDATE keys SET revoked_at = COALESCE(revoked_at, ?), updated_at = ? "
                                          "WHERE id = ?", (now, now))

    async def rotate(self, key_id: str, digest: bytes, hint: str) -> KeyRecord | None:
        return await self._change(key_id, "UPDATE keys SET digest = ?, hint = ?, updated_at = ? "
                                          "WHERE id = ? AND revoked_at IS NULL", (digest, hint, time.time()))

    async def generation(self) -> int:
        """The generation counter. Polled twice a second: while neither keys.db nor its WAL has changed (size, inode,
        modification time) the last one read is answered without a trip to the SQLite thread (~55k instructions a
        poll under callgrind, ~40k a request of an idle-ish server). A file modified less than RACY_S ago is not
        trusted (its timestamp may not move within one clock tick), so a change is always read within a poll."""
        stamp = self._stamp()  # before the read: a write after it changes the stamp for the next poll
        if stamp is not None and stamp == self._stamp_seen and self._generation is not None:
            return self._generation

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM keys_generation WHERE id = 1").fetchone()
            return int(row[0]) if row else 0

        generation = await self._db.run(read)
        self._stamp_seen, self._generation = stamp, generation
        return generation

    def _stamp(self) -> tuple[tuple[int, int, int] | None, ...] | None:
        """(size, inode, mtime) of keys.db and of its WAL (None: no WAL); None when it cannot be trusted."""
        now_ns = time.time_ns()
        out: list[tuple[int, int, int] | None] = []
        for path in self._files:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                out.append(None)
                continue
            except OSError:
                return None
            if now_ns - st.st_mtime_ns < RACY_NS:
                return None
            out.append((st.st_size, st.st_ino, st.st_mtime_ns))
        return tuple(out)


__all__ = ["KeyStore", "SqliteKeyStore"]
