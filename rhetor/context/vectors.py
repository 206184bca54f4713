"""Message vectors: their SQLite table (next to the messages), the indexer's and the searches' queries, and a
bounded LRU cache of per-context vector scopes that exact cosine search runs on.

Vectors are unit-length float32 BLOBs keyed by message id (one per message: the primary key makes
"embedded exactly once" a schema fact) and tagged with the embedder's name, so changing the embedder
re-embeds rather than mixing spaces. Nothing holds all vectors in memory: a search reads its scope from the
database — one context's most recent vectors (at most what the cache may hold), kept in `ScopeCache` under a
byte budget and evicted least-recently-used — or, for a component or everything, streams the table in chunks
keeping a running top-k. Resident memory is the cache budget plus one chunk, whatever the number of stored
messages. The scopes themselves (int8 codes: ~3.9x the vectors of float32 in a budget) and the search over them are
rhetor.context.scopes. The SQL functions are synchronous
and run on the store's worker thread (`SqliteContextStore.run`); cache writes happen there too, so a scope load
and the indexer's additions are ordered by that one thread.
Knows nothing of embedders' internals, routing or HTTP.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, overload

if TYPE_CHECKING:  # NumPy loads on first use (rhetor.lazy), not at start-up
    import numpy as np
else:
    from rhetor.lazy import numpy as np

from rhetor.context.scopes import Ids, Matrix, Scope, ScopeBuilder

# Migration 2 of rhetor.context.sqlite.MIGRATIONS. Append only; never edit once released.
MEMORY_SCHEMA: Final[tuple[str, ...]] = (
    "CREATE TABLE message_vectors (message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE, "
    "model TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL)",
    "CREATE INDEX message_vectors_by_model ON message_vectors(model, message_id)",
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='id', "
    "tokenize='porter unicode61')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); "
    "DELETE FROM message_vectors WHERE message_id = new.id; END",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",  # backfill messages stored before this
)

SCAN_CHUNK: Final = 4096  # rows per read of a wide scan: ~1.5 MB at 384 dimensions
PARTNER_CHARS: Final = 2000
# A turn's messages are inserted together by one writer, so their ids are contiguous: the id window keeps
# the partner lookup on the primary key.
_TURN_SPAN: Final = 16
_COMPONENT_SQL: Final = ("instr(m.context_id, ':') > 1 "
                         "AND lower(substr(m.context_id, 1, instr(m.context_id, ':') - 1)) = ?")

@dataclass(frozen=True, slots=True)
class Pending:
    """A message still waiting for its vector, and the text to embed for it (see `embedding_text`)."""

    id: int
    context_id: str
    text: str


def embedding_text(content: str, partners: str | None) -> str:
    """A message is embedded with the rest of its turn after it: an answer alone often lacks the topic its
    question named, and a question lacks the facts of its answer (measured: recall@5 0.85 -> see
    benchmarks/README.md). Its own words come first, so a model's input limit truncates the partner."""
    if not partners:
        return content
    return f"{content}\n\n{partners[:PARTNER_CHARS]}"


# -- SQL (run on the store's worker thread) -------------------------------------------------------------

@overload
def backlog_batch(conn: sqlite3.Connection, model: str, after_id: int, limit: int) -> list[Pending]: ...


@overload
def backlog_batch(conn: sqlite3.Connection, model: str, after_id: int, limit: int, *,
                  with_top: Literal[True]) -> tuple[int, list[Pending]]: ...


def backlog_batch(conn: sqlite3.Connection, model: str, after_id: int, limit: int, *,
                  with_top: bool = False) -> list[Pending] | tuple[int, list[Pending]]:
    """The oldest messages after `after_id` that have no vector from `model`; `with_top`: also the highest
    message id they were looked for up to (read first, so a message stored meanwhile is never skipped)."""
    (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM messages").fetchone()
    rows = conn.execute(
        "SELECT m.id, m.context_id, m.content, (SELECT group_concat(o.content, char(10)) FROM messages o "
        "WHERE o.id BETWEEN m.id - ? AND m.id + ? AND o.id != m.id AND o.context_id = m.context_id "
        "AND o.turn = m.turn) FROM messages m WHERE m.id > ? AND m.id <= ? AND NOT EXISTS "
        "(SELECT 1 FROM message_vectors v WHERE v.message_id = m.id AND v.model = ?) ORDER BY m.id LIMIT ?",
        (_TURN_SPAN, _TURN_SPAN, after_id, top, model, limit),
    ).fetchall()
    pending = [Pending(int(i), c, embedding_text(t, p)) for i, c, t, p in rows]
    return (int(top), pending) if with_top else pending


def save_vectors(conn: sqlite3.Connection, model: str, ids: list[int], matrix: Matrix) -> list[int]:
    """Store one vector per id in one transaction; returns the ids stored (a message deleted meanwhile is
    skipped). Re-storing an id replaces its vector, so a batch replayed after a crash never duplicates."""
    dim = int(matrix.shape[1])
    stored: list[int] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for mid, row in zip(ids, matrix, strict=True):
            cur = conn.execute(
                "INSERT INTO message_vectors (message_id, model, dim, vector) SELECT ?, ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM messages WHERE id = ?) "
                "ON CONFLICT(message_id) DO UPDATE SET model = excluded.model, dim = excluded.dim, "
                "vector = excluded.vector",
                (mid, model, dim, np.ascontiguousarray(row, dtype=np.float32).tobytes(), mid),
            )
            if cur.rowcount:
                stored.append(mid)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return stored


def counts(conn: sqlite3.Connection, model: str, context_id: str | None = None) -> tuple[int, int]:
    """(messages embedded by `model`, messages still waiting), for one context or all."""
    where, args = ("WHERE m.context_id = ?", (model, context_id)) if context_id else ("", (model,))
    total, embedded = conn.execute(
        "SELECT COUNT(*), COUNT(v.message_id) FROM messages m LEFT JOIN message_vectors v "
        f"ON v.message_id = m.id AND v.model = ? {where}", args,
    ).fetchone()
    return int(embedded), int(total) - int(embedded)


def read_scope(conn: sqlite3.Connection, model: str, context_id: str, max_bytes: int) -> Scope:
    """The most recent vectors of one context, newest first from the index, up to `max_bytes` of them."""
    cur = conn.execute(
        "SELECT v.message_id, v.vector FROM messages m JOIN message_vectors v ON v.message_id = m.id "
        "WHERE m.context_id = ? AND v.model = ? ORDER BY m.id DESC", (context_id, model))
    scope = ScopeBuilder(max_bytes)
    while (rows := cur.fetchmany(512)) and scope.take(rows):
        pass
    cur.close()
    return scope.build()


def read_chunk(conn: sqlite3.Connection, model: str, after_id: int, *, context_id: str | None = None,
               component: str | None = None, below: int | None = None,
               limit: int = SCAN_CHUNK) -> tuple[Ids, list[bytes]]:
    """Up to `limit` vectors of `model` with ids above `after_id` (and below `below`), in id order, from one
    context, one component's contexts, or all: one step of a wide scan."""
    where, args = ["v.model = ?", "v.message_id > ?"], [model, after_id]
    if below is not None:
        where.append("v.message_id < ?")
        args.append(below)
    if context_id is not None:
        sql = ("SELECT v.message_id, v.vector FROM messages m JOIN message_vectors v ON v.message_id = m.id "
               f"WHERE m.context_id = ? AND m.id > ? AND {' AND '.join(where)} ORDER BY m.id LIMIT ?")
        args = [context_id, after_id, *args]
    elif component is not None:
        sql = ("SELECT v.message_id, v.vector FROM message_vectors v JOIN messages m ON m.id = v.message_id "
               f"WHERE {' AND '.join(where)} AND {_COMPONENT_SQL} ORDER BY v.message_id LIMIT ?")
        args.append(component.lower())
    else:
        sql = f"SELECT v.message_id, v.vector FROM message_vectors v WHERE {' AND '.join(where)} " \
              "ORDER BY v.message_id LIMIT ?"
    rows = conn.execute(sql, [*args, limit]).fetchall()
    return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [bytes(r[1]) for r in rows]


class ScopeCache:
    """Per-context scopes (rhetor.context.scopes) of one embedder, least recently used first, within
    `max_bytes` in all."""

    def __init__(self, model: str, max_bytes: int) -> None:
        self.model, self.max_bytes = model, max_bytes
        self._scopes: OrderedDict[str, Scope] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, context_id: str) -> Scope | None:
        with self._lock:
            scope = self._scopes.get(context_id)
            if scope is None:
                self.misses += 1
                return None
            self.hits += 1
            self._scopes.move_to_end(context_id)
            return scope

    def load(self, conn: sqlite3.Connection, context_id: str) -> Scope:
        """Read a context's scope and keep it (on the worker thread, ordered with `add`)."""
        return self.keep(context_id, read_scope(conn, self.model, context_id, self.max_bytes))

    def keep(self, context_id: str, scope: Scope) -> Scope:
        """Cache a scope read from the database (the caller orders it with `add`)."""
        with self._lock:
            self._scopes[context_id] = scope
            self._scopes.move_to_end(context_id)
            self._evict()
        return scope

    def add(self, context_ids: Iterable[str], ids: list[int], matrix: Matrix) -> None:
        """New vectors from the indexer (on the worker thread, after they are stored): cached scopes grow."""
        by_context: dict[str, list[int]] = {}
        for row, cid in enumerate(context_ids):
            by_context.setdefault(cid, []).append(row)
        with self._lock:
            for cid, rows in by_context.items():
                scope = self._scopes.get(cid)
                if scope is not None:
                    scope.append([ids[r] for r in rows], matrix[rows], self.max_bytes)
            self._evict()

    def drop(self, context_id: str) -> None:
        with self._lock:
            self._scopes.pop(context_id, None)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"scopes": len(self._scopes), "vectors": sum(len(s) for s in self._scopes.values()),
                    "bytes": self._bytes(), "max_bytes": self.max_bytes, "hits": self.hits, "misses": self.misses}

    def _bytes(self) -> int:
        return sum(s.nbytes for s in self._scopes.values())

    def _evict(self) -> None:
        total = self._bytes()
        while total > self.max_bytes and len(self._scopes) > 1:
            _, scope = self._scopes.popitem(last=False)
            total -= scope.nbytes
        if total > self.max_bytes:  # one scope alone over budget (capacity slack): not kept
            self._scopes.clear()


__all__ = [
    "MEMORY_SCHEMA",
    "SCAN_CHUNK",
    "Pending",
    "ScopeCache",
    "backlog_batch",
    "counts",
    "embedding_text",
    "read_chunk",
    "read_scope",
    "save_vectors",
]
