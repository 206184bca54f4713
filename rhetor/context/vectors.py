"""Message vectors: their SQLite table (next to the messages), the indexer's queries, and the in-memory
matrix that exact cosine search runs on.

Vectors are unit-length float32 BLOBs keyed by message id (one per message: the primary key makes
"embedded exactly once" a schema fact) and tagged with the embedder's name, so changing the embedder
re-embeds rather than mixing spaces. Search is one NumPy matrix-vector product over the rows that pass a
context/component mask — exact, no approximate index (measured in benchmarks/README.md: ~7 ms at 100k
vectors on one core). The SQL functions are synchronous and run on the store's worker thread
(`SqliteContextStore.run`). Knows nothing of embedders' internals, routing or HTTP.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from rhetor.context.store import component_of

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

LOAD_CHUNK: Final = 5000
PARTNER_CHARS: Final = 2000
# A turn's messages are inserted together by one writer, so their ids are contiguous: the id window keeps
# the partner lookup on the primary key.
_TURN_SPAN: Final = 16
_INITIAL_CAPACITY: Final = 1024


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

def backlog_batch(conn: sqlite3.Connection, model: str, after_id: int, limit: int) -> list[Pending]:
    """The oldest messages after `after_id` that have no vector from `model`."""
    rows = conn.execute(
        "SELECT m.id, m.context_id, m.content, (SELECT group_concat(o.content, char(10)) FROM messages o "
        "WHERE o.id BETWEEN m.id - ? AND m.id + ? AND o.id != m.id AND o.context_id = m.context_id "
        "AND o.turn = m.turn) FROM messages m WHERE m.id > ? AND NOT EXISTS "
        "(SELECT 1 FROM message_vectors v WHERE v.message_id = m.id AND v.model = ?) ORDER BY m.id LIMIT ?",
        (_TURN_SPAN, _TURN_SPAN, after_id, model, limit),
    ).fetchall()
    return [Pending(int(i), c, embedding_text(t, p)) for i, c, t, p in rows]


def save_vectors(conn: sqlite3.Connection, model: str, ids: list[int], matrix: NDArray[np.float32]) -> list[int]:
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


def load_chunk(conn: sqlite3.Connection, model: str, after_id: int) -> list[tuple[int, str, bytes]]:
    """Up to LOAD_CHUNK stored vectors of `model` after `after_id`: (message id, context id, vector bytes)."""
    rows = conn.execute(
        "SELECT v.message_id, m.context_id, v.vector FROM message_vectors v JOIN messages m ON m.id = v.message_id "
        "WHERE v.model = ? AND v.message_id > ? ORDER BY v.message_id LIMIT ?",
        (model, after_id, LOAD_CHUNK),
    ).fetchall()
    return [(int(i), c, bytes(b)) for i, c, b in rows]


def counts(conn: sqlite3.Connection, model: str, context_id: str | None = None) -> tuple[int, int]:
    """(messages embedded by `model`, messages still waiting), for one context or all."""
    where, args = ("WHERE m.context_id = ?", (model, context_id)) if context_id else ("", (model,))
    total, embedded = conn.execute(
        "SELECT COUNT(*), COUNT(v.message_id) FROM messages m LEFT JOIN message_vectors v "
        f"ON v.message_id = m.id AND v.model = ? {where}", args,
    ).fetchone()
    return int(embedded), int(total) - int(embedded)


# -- the in-memory matrix -------------------------------------------------------------------------------

class VectorIndex:
    """All vectors of one embedder in one growing float32 matrix, with each row's message and context.

    Rows are only appended (by the indexer, on the event loop) and the live row count is published last,
    so a search running on another thread sees a consistent prefix. Rows of deleted messages linger until
    `reset`; callers check hits against the store, which is the truth.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.dim: int | None = None
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._matrix = np.zeros((0, 0), dtype=np.float32)
            self._ids = np.zeros(0, dtype=np.int64)
            self._ctx = np.zeros(0, dtype=np.int32)
            self._n = 0
            self._row_of: dict[int, int] = {}
            self._ctx_code: dict[str, int] = {}
            self._comp_codes: dict[str, list[int]] = {}
            self.loaded_through = 0  # highest message id loaded from the store

    def __len__(self) -> int:
        return self._n

    def has(self, message_id: int) -> bool:
        return message_id in self._row_of

    def add(self, ids: list[int], context_ids: list[str], matrix: NDArray[np.float32]) -> None:
        if not ids:
            return
        with self._lock:
            if self.dim is None:
                self.dim = int(matrix.shape[1])
            if matrix.shape[1] != self.dim:
                return  # a different space under the same name: never mixed in
            fresh = [i for i, mid in enumerate(ids) if mid not in self._row_of]
            need = self._n + len(fresh)
            if need > self._matrix.shape[0]:
                cap = max(_INITIAL_CAPACITY, need, 2 * self._matrix.shape[0])
                grown = np.zeros((cap, self.dim), dtype=np.float32)
                ids_grown = np.zeros(cap, dtype=np.int64)
                ctx_grown = np.zeros(cap, dtype=np.int32)
                if self._n:
                    grown[: self._n] = self._matrix[: self._n]
                    ids_grown[: self._n] = self._ids[: self._n]
                    ctx_grown[: self._n] = self._ctx[: self._n]
                self._matrix, self._ids, self._ctx = grown, ids_grown, ctx_grown
            for i, mid in enumerate(ids):
                row = self._row_of.get(mid)
                if row is not None:  # re-embedded: replace in place
                    self._matrix[row] = matrix[i]
            for offset, i in enumerate(fresh):
                row = self._n + offset
                self._matrix[row] = matrix[i]
                self._ids[row] = ids[i]
                self._ctx[row] = self._code(context_ids[i])
                self._row_of[ids[i]] = row
            self._n = need
            self.loaded_through = max(self.loaded_through, max(ids))

    def search(self, query: NDArray[np.float32], k: int, *, context_id: str | None = None,
               component: str | None = None) -> list[tuple[int, float]]:
        """The `k` best (message id, cosine) among rows of one context, one component, or all."""
        n, matrix, ids, ctx = self._n, self._matrix, self._ids, self._ctx
        if n == 0 or k <= 0 or self.dim is None or query.shape[-1] != self.dim:
            return []
        rows: NDArray[np.intp] | None = None
        if context_id is not None or component is not None:
            codes = ([self._ctx_code[context_id]] if context_id in self._ctx_code else []) if context_id is not None \
                else self._comp_codes.get(component or "", [])
            if not codes:
                return []
            mask = np.isin(ctx[:n], np.asarray(codes, dtype=np.int32))
            rows = np.flatnonzero(mask)
            if len(rows) * 8 > n:  # a large share: one full product beats gathering the rows (a copy)
                scores = (matrix[:n] @ query.reshape(-1))[rows]
            else:
                scores = matrix[rows] @ query.reshape(-1)
        else:
            scores = matrix[:n] @ query.reshape(-1)
        top = _top_k(scores, k)
        hit_ids = ids[rows[top]] if rows is not None else ids[top]
        return [(int(i), float(s)) for i, s in zip(hit_ids, scores[top], strict=True)]

    def scores(self, query: NDArray[np.float32], message_ids: list[int]) -> dict[int, float]:
        """Cosine of `query` with each listed message that has a vector (others are absent)."""
        if self.dim is None or query.shape[-1] != self.dim:
            return {}
        found = [(mid, row) for mid in message_ids if (row := self._row_of.get(mid)) is not None]
        if not found:
            return {}
        rows = np.fromiter((r for _, r in found), dtype=np.intp, count=len(found))
        values = self._matrix[rows] @ query.reshape(-1)
        return {mid: float(v) for (mid, _), v in zip(found, values, strict=True)}

    def _code(self, context_id: str) -> int:
        code = self._ctx_code.get(context_id)
        if code is None:
            code = self._ctx_code[context_id] = len(self._ctx_code)
            comp = component_of(context_id)
            if comp is not None:
                self._comp_codes.setdefault(comp.lower(), []).append(code)
        return code


def _top_k(scores: NDArray[np.float32], k: int) -> NDArray[np.intp]:
    """Indices of the k highest scores, best first (argpartition: O(n), then a sort of k)."""
    if scores.shape[0] <= k:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def from_bytes(blobs: list[bytes], dim: int) -> NDArray[np.float32]:
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(blobs), dim)


__all__ = [
    "LOAD_CHUNK",
    "MEMORY_SCHEMA",
    "Pending",
    "VectorIndex",
    "backlog_batch",
    "counts",
    "embedding_text",
    "from_bytes",
    "load_chunk",
    "save_vectors",
]
