"""Semantic memory on PostgreSQL: message vectors next to the shared messages, exact cosine search, and lexical
search — the MemoryStore protocol of rhetor.context.memory_store.

Vectors are unit-length float32 BYTEA rows keyed by message id and tagged with the embedder's name, as on SQLite.
Searches run in NumPy over the scope searched: one context's scope is cached per process (ScopeCache, bounded by
RHETOR_VECTOR_CACHE_MB) and brought up to date on each use by reading only the vectors newer than it holds (so a
vector another replica's indexer stored is found here); a component or everything is streamed in chunks keeping
a running top-k, so memory never grows with what is stored. When the `vector` extension (pgvector) is installed,
or available and this role may create it, each vector is also kept as a `vector` and those wide scans run in the
database (`ORDER BY embedding <=> q`, exact) instead. Lexical search is PostgreSQL full-text search (english
stemming, ts_rank) over an expression index.
Several replicas each run an indexer: they may embed the same message twice (the upsert keeps one vector). The
indexer's cursor only passes ids every transaction that could still commit below them has finished (the
snapshot's xmin), because concurrent turns commit out of id order. Knows SQL and NumPy; nothing of embedders,
HTTP or routing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # NumPy loads on first use (rhetor.lazy), not at start-up
    import numpy as np
    from numpy.typing import NDArray
else:
    from rhetor.lazy import numpy as np

from rhetor.context.lexical import Hit, fts_query
from rhetor.context.memory_store import Found, MessageRow
from rhetor.context.scopes import Ids, Matrix, Scope, ScopeBuilder, from_bytes
from rhetor.context.tail import FETCH, RecentTurns, Turn
from rhetor.context.vectors import SCAN_CHUNK, Pending, ScopeCache, embedding_text
from rhetor.storage.postgres import Database, Migrations

log = logging.getLogger("rhetor.storage")

MIGRATIONS: Final[Migrations] = (
    (
        "CREATE TABLE message_vectors (message_id BIGINT PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE, "
        "model TEXT NOT NULL, dim INTEGER NOT NULL, vector BYTEA NOT NULL)",
        "CREATE INDEX message_vectors_by_model ON message_vectors(model, message_id)",
        "CREATE INDEX messages_by_turn ON messages(context_id, turn)",
        "CREATE INDEX messages_fts ON messages USING GIN (to_tsvector('english', content))",
    ),
)
# Applied only where pgvector is installed; vectors stored before it have no `embedding` and are scanned in NumPy.
PGVECTOR_MIGRATIONS: Final[Migrations] = (
    ("ALTER TABLE message_vectors ADD COLUMN IF NOT EXISTS embedding vector",),
)
_COMPONENT: Final = "position(':' in m.context_id) > 1 AND lower(split_part(m.context_id, ':', 1)) = "
_PENDING_TOPS: Final = 256  # (top, xmax) observations waiting for their transactions to end


class PostgresMemory:
    """MemoryStore on a shared `Database` (opened by its owner; the memory tables migrate on first use)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.search = "numpy"  # or "pgvector", once open
        self._ready = False
        self._open_lock = asyncio.Lock()
        self._cache_lock = asyncio.Lock()  # a scope read and the indexer's additions never pass each other here
        self._tops: list[tuple[int, int]] = []
        self._safe = 0

    async def open(self) -> None:
        if self._ready:
            return
        async with self._open_lock:
            if self._ready:
                return
            await self.db.open()
            await self.db.migrate("contexts", _contexts_migrations())
            await self.db.migrate("memory", MIGRATIONS)
            if await self._pgvector():
                await self.db.migrate("memory_pgvector", PGVECTOR_MIGRATIONS)
                self.search = "pgvector"
            self._ready = True

    async def _pgvector(self) -> bool:
        """pgvector installed, or available and creatable by this role; never required."""
        import asyncpg

        if self.db.pgvector:
            return True
        available = await self.db.fetchval("SELECT EXISTS (SELECT 1 FROM pg_available_extensions "
                                           "WHERE name = 'vector')")
        if not available:
            return False
        try:
            await self.db.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except asyncpg.PostgresError as exc:  # no privilege: NumPy search, said in /health
            log.info("pgvector is available but cannot be created (%s): searching in NumPy", exc)
            return False
        self.db.pgvector = True
        return True

    # -- the indexer ------------------------------------------------------------------------------------
    async def backlog(self, model: str, after_id: int, limit: int) -> tuple[int, list[Pending]]:
        await self.open()
        async with self.db.connection() as conn:
            top, xmin, xmax = await conn.fetchrow(
                "SELECT COALESCE((SELECT MAX(id) FROM messages), 0), "
                "pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
                "pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
            rows = await conn.fetch(
                "SELECT m.id, m.context_id, m.content, (SELECT string_agg(o.content, E'\\n' ORDER BY o.id) "
                "FROM messages o WHERE o.context_id = m.context_id AND o.turn = m.turn AND o.id <> m.id) "
                "FROM messages m WHERE m.id > $1 AND NOT EXISTS (SELECT 1 FROM message_vectors v "
                "WHERE v.message_id = m.id AND v.model = $2) ORDER BY m.id LIMIT $3", after_id, model, limit)
        return self._safe_top(int(top), int(xmin), int(xmax)), [
            Pending(int(r[0]), r[1], embedding_text(r[2], r[3])) for r in rows]

    def _safe_top(self, top: int, xmin: int, xmax: int) -> int:
        """The highest id below which every message that will ever exist is visible now: `top` as seen when the
        transactions then running (xid < xmax) have all ended (the current xmin has passed that xmax)."""
        if len(self._tops) < _PENDING_TOPS:
            self._tops.append((top, xmax))
        done = [t for t, x in self._tops if x <= xmin]
        if done:
            self._safe = max(self._safe, *done)
            self._tops = [(t, x) for t, x in self._tops if x > xmin]
        return self._safe

    async def save(self, model: str, ids: list[int], contexts: list[str], matrix: Matrix,
                   cache: ScopeCache) -> list[int]:
        await self.open()
        dim = int(matrix.shape[1])
        blobs = [np.ascontiguousarray(row, dtype=np.float32).tobytes() for row in matrix]
        extra_col, extra_val, extra_set, args = "", "", "", [ids, model, dim, blobs]
        if self.search == "pgvector":
            extra_col, extra_val, extra_set = ", embedding", ", u.e::vector", ", embedding = excluded.embedding"
            args.append([_vector_text(row) for row in matrix])
        unnest = "unnest($1::bigint[], $4::bytea[], $5::text[]) AS u(id, v, e)" if extra_col else \
            "unnest($1::bigint[], $4::bytea[]) AS u(id, v)"
        async with self._cache_lock:
            rows = await self.db.fetch(
                f"INSERT INTO message_vectors (message_id, model, dim, vector{extra_col}) "
                f"SELECT u.id, $2, $3, u.v{extra_val} FROM {unnest} "
                "WHERE EXISTS (SELECT 1 FROM messages m WHERE m.id = u.id) ON CONFLICT (message_id) DO UPDATE SET "
                f"model = excluded.model, dim = excluded.dim, vector = excluded.vector{extra_set} "
                "RETURNING message_id", *args)
            keep = {int(r[0]) for r in rows}
            picked = [i for i, mid in enumerate(ids) if mid in keep]
            cache.add([contexts[i] for i in picked], [ids[i] for i in picked], matrix[picked])
        return [mid for mid in ids if mid in keep]

    async def counts(self, model: str, context_id: str | None) -> tuple[int, int]:
        await self.open()
        where, args = ("WHERE m.context_id = $2", (model, context_id)) if context_id else ("", (model,))
        total, embedded = await self.db.fetchrow(
            "SELECT COUNT(*), COUNT(v.message_id) FROM messages m LEFT JOIN message_vectors v "
            f"ON v.message_id = m.id AND v.model = $1 {where}", *args)
        return int(embedded), int(total) - int(embedded)

    # -- searches ---------------------------------------------------------------------------------------
    async def scope(self, cache: ScopeCache, context_id: str) -> Scope:
        await self.open()
        found = cache.get(context_id)
        if found is not None:  # bring it up to date: only the vectors newer than it holds (another replica's)
            ids = found.rows()[0]
            newest = int(ids[-1]) if len(ids) else found.floor - 1
            new_ids, blobs = await self._context_rows(cache.model, context_id, after=max(newest, 0),
                                                      limit=SCAN_CHUNK)
            if len(new_ids) == SCAN_CHUNK:  # far behind: read it afresh (bounded) rather than append a flood
                cache.drop(context_id)
                return await self.scope(cache, context_id)
            if len(new_ids):
                dims = {len(b) for b in blobs}
                if len(dims) == 1:
                    async with self._cache_lock:
                        cache.add([context_id] * len(new_ids), [int(i) for i in new_ids],
                                  from_bytes(blobs, dims.pop() // 4))
            return found
        async with self._cache_lock:
            return cache.keep(context_id, await self._read_scope(cache.model, context_id, cache.max_bytes))

    async def _read_scope(self, model: str, context_id: str, max_bytes: int) -> Scope:
        """The most recent vectors of one context, newest first from the index, up to `max_bytes` of them."""
        scope, before = ScopeBuilder(max_bytes), None
        while True:
            cond, args = ("AND m.id < $3", [context_id, model, before]) if before else ("", [context_id, model])
            rows = await self.db.fetch(
                "SELECT v.message_id, v.vector FROM messages m JOIN message_vectors v ON v.message_id = m.id "
                f"WHERE m.context_id = $1 AND v.model = $2 {cond} ORDER BY m.id DESC LIMIT {FETCH * 2}", *args)
            if not scope.take(rows) or len(rows) < FETCH * 2:
                break
            before = int(rows[-1][0])
        return scope.build()

    async def _context_rows(self, model: str, context_id: str, *, after: int, limit: int,
                            below: int | None = None) -> tuple[Ids, list[bytes]]:
        cond = "AND m.id < $4" if below is not None else ""
        rows = await self.db.fetch(
            "SELECT v.message_id, v.vector FROM messages m JOIN message_vectors v ON v.message_id = m.id "
            f"WHERE m.context_id = $1 AND v.model = $2 AND m.id > $3 {cond} ORDER BY m.id LIMIT {int(limit)}",
            context_id, model, after, *(() if below is None else (below,)))
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [bytes(r[1]) for r in rows]

    async def chunk(self, model: str, after_id: int, *, context_id: str | None, component: str | None,
                    below: int | None) -> tuple[Ids, list[bytes]]:
        await self.open()
        if context_id is not None:
            return await self._context_rows(model, context_id, after=after_id, limit=SCAN_CHUNK, below=below)
        where, args = ["v.model = $1", "v.message_id > $2"], [model, after_id]
        if below is not None:
            args.append(below)
            where.append(f"v.message_id < ${len(args)}")
        join = ""
        if component is not None:
            args.append(component.lower())
            join, where = "JOIN messages m ON m.id = v.message_id", [*where, f"{_COMPONENT}${len(args)}"]
        rows = await self.db.fetch(f"SELECT v.message_id, v.vector FROM message_vectors v {join} "
                                   f"WHERE {' AND '.join(where)} ORDER BY v.message_id LIMIT {SCAN_CHUNK}", *args)
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [bytes(r[1]) for r in rows]

    async def scan(self, model: str, query: NDArray[np.float32], want: int, *, context_id: str | None,
                   component: str | None, below: int | None) -> Found | None:
        """With pgvector: the exact top `want` by cosine distance, in the database (no index: exact). Vectors
        stored before pgvector was installed (no `embedding`) are then not searched this way: NumPy it is."""
        await self.open()
        if self.search != "pgvector" or await self._unconverted(model):
            return None
        q = _vector_text(query.reshape(-1))
        where, args = ["v.model = $2", "v.dim = $3", "v.embedding IS NOT NULL"], [q, model, int(query.shape[-1])]
        if context_id is not None:
            args.append(context_id)
            where.append(f"m.context_id = ${len(args)}")
        if component is not None:
            args.append(component.lower())
            where.append(f"{_COMPONENT}${len(args)}")
        if below is not None:
            args.append(below)
            where.append(f"v.message_id < ${len(args)}")
        args.append(want)
        rows = await self.db.fetch(
            "SELECT v.message_id, 1 - (v.embedding <=> $1::text::vector) FROM message_vectors v JOIN messages m "
            f"ON m.id = v.message_id WHERE {' AND '.join(where)} ORDER BY v.embedding <=> $1::text::vector "
            f"LIMIT ${len(args)}", *args)
        return (np.asarray([int(r[0]) for r in rows], dtype=np.int64),
                np.asarray([float(r[1]) for r in rows], dtype=np.float32))

    async def _unconverted(self, model: str) -> bool:
        return bool(await self.db.fetchval("SELECT EXISTS (SELECT 1 FROM message_vectors WHERE model = $1 "
                                           "AND embedding IS NULL)", model))

    async def messages(self, ids: list[int]) -> list[MessageRow]:
        if not ids:
            return []
        await self.open()
        rows = await self.db.fetch("SELECT id, context_id, role, content, timestamp FROM messages "
                                   "WHERE id = ANY($1::bigint[]) AND status = 'complete'", ids)
        return [(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    async def recent_turns(self, context_id: str, budget_tokens: int) -> tuple[list[Turn], bool]:
        """Newest first, one page at a time down the (context_id, id) index, until the budget is full."""
        recent, before = RecentTurns(budget_tokens), None
        while True:
            cond, args = ("AND id < $2", [context_id, before]) if before is not None else ("", [context_id])
            rows = await self.db.fetch("SELECT id, turn, role, content, metadata FROM messages WHERE context_id = $1 "
                                       f"AND status = 'complete' {cond} ORDER BY id DESC LIMIT {FETCH}", *args)
            page = [(int(r[0]), int(r[1]), r[2], r[3], r[4]) for r in rows]
            if recent.feed(page) or len(page) < FETCH:
                return recent.result()
            before = page[-1][0]

    async def turns_of(self, context_id: str, message_ids: list[int]) -> list[Turn]:
        """The whole complete turns holding these messages, oldest first (by (context_id, turn): a turn's ids
        need not be contiguous here, other contexts' turns commit in between)."""
        if not message_ids:
            return []
        rows = await self.db.fetch(
            "SELECT DISTINCT o.id, o.turn, o.role, o.content, o.metadata FROM messages h JOIN messages o "
            "ON o.context_id = h.context_id AND o.turn = h.turn WHERE h.id = ANY($1::bigint[]) "
            "AND h.context_id = $2 AND o.status = 'complete' ORDER BY o.id", message_ids, context_id)
        turns: dict[int, Turn] = {}
        for mid, number, role, content, meta in rows:
            turns.setdefault(int(number), Turn(int(number))).add(int(mid), role, content, meta)
        return [t for t in turns.values() if t.ids]

    async def lexical(self, text: str, k: int, *, context_id: str | None = None, component: str | None = None,
                      max_id: int | None = None) -> list[Hit]:
        """The `k` complete messages best matching `text` (its words OR-ed, stop words dropped, as on SQLite):
        the caller's text reaches PostgreSQL only as websearch_to_tsquery's input, which never raises."""
        query = fts_query(text)
        if query is None or k <= 0:
            return []
        await self.open()
        where = ["to_tsvector('english', m.content) @@ q", "m.status = 'complete'"]
        args: list[Any] = [query.replace('" OR "', '" or "')]
        for cond, value in (("m.context_id = ", context_id), (_COMPONENT, component.lower() if component else None),
                            ("m.id <= ", max_id)):
            if value is not None:
                args.append(value)
                where.append(f"{cond}${len(args)}")
        args.append(k)
        rows = await self.db.fetch(
            "SELECT m.id, m.context_id, m.role, m.content, m.timestamp, "
            "ts_rank(to_tsvector('english', m.content), q) AS rank FROM messages m, "
            f"websearch_to_tsquery('english', $1) q WHERE {' AND '.join(where)} ORDER BY rank DESC, m.id DESC "
            f"LIMIT ${len(args)}", *args)
        return [Hit(int(r[0]), r[1], r[2], r[3], r[4], float(r[5])) for r in rows]


def _vector_text(row: Any) -> str:
    """A vector in pgvector's text form, `[x,y,...]` (passed as text and cast: no client codec needed)."""
    return "[" + ",".join(repr(float(x)) for x in np.asarray(row, dtype=np.float32).tolist()) + "]"


def _contexts_migrations() -> Migrations:
    from rhetor.storage.pg_contexts import MIGRATIONS as CONTEXTS

    return CONTEXTS


__all__ = ["MIGRATIONS", "PGVECTOR_MIGRATIONS", "PostgresMemory"]
