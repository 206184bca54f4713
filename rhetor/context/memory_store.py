"""What semantic memory needs of the database that holds the messages — the `MemoryStore` protocol — and its
SQLite implementation, which runs the queries of rhetor.context.{vectors,lexical,tail} on the context store's
worker thread.

The indexer asks for the backlog (messages without a vector from this embedder) and saves vectors; searches ask
for a context's scope (cached, rhetor.context.vectors.ScopeCache), chunks of a wide scan, the messages behind
ids, whole turns and lexical hits. A store may also search in the database itself (`scan`: pgvector); None
means "scan the chunks here with NumPy". The PostgreSQL implementation is rhetor.storage.pg_vectors.
`backlog` returns a `top`: every message with an id up to it is visible now, so the indexer never needs to look
below it again. Knows nothing of embedders' internals, routing or HTTP.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

if TYPE_CHECKING:  # NumPy loads on first use (rhetor.lazy), not at start-up
    import numpy as np
    from numpy.typing import NDArray
else:
    from rhetor.lazy import numpy as np

from rhetor.context.lexical import Hit, lexical_search
from rhetor.context.scopes import Ids, Matrix, Scope
from rhetor.context.tail import Turn, recent_turns, turns_of
from rhetor.context.vectors import (
    Pending,
    ScopeCache,
    backlog_batch,
    counts,
    read_chunk,
    save_vectors,
)

T = TypeVar("T")
if TYPE_CHECKING:
    Found = tuple[NDArray[np.int64], NDArray[np.float32]]
else:
    Found = Any  # only ever in (string) annotations: naming it must not import NumPy
MessageRow = tuple[int, str, str, str, str]  # id, context id, role, content, timestamp


class SqlRunner(Protocol):
    """A SQLite store's worker: run a function on its connection, off the event loop."""

    def run(self, fn: Callable[[Any], T]) -> Awaitable[T]: ...


class MemoryStore(Protocol):
    async def backlog(self, model: str, after_id: int, limit: int) -> tuple[int, list[Pending]]:
        """(top, the oldest messages above `after_id` without a vector from `model`, at most `limit`)."""
        ...

    async def save(self, model: str, ids: list[int], contexts: list[str], matrix: Matrix,
                   cache: ScopeCache) -> list[int]:
        """Store the vectors (a message deleted meanwhile is skipped), then grow the cached scopes they touch."""
        ...

    async def counts(self, model: str, context_id: str | None) -> tuple[int, int]: ...

    async def scope(self, cache: ScopeCache, context_id: str) -> Scope:
        """The context's scope, current: from the cache, read from the database on a miss."""
        ...

    async def chunk(self, model: str, after_id: int, *, context_id: str | None, component: str | None,
                    below: int | None) -> tuple[Ids, list[bytes]]: ...

    async def scan(self, model: str, query: NDArray[np.float32], want: int, *, context_id: str | None,
                   component: str | None, below: int | None) -> Found | None:
        """The top `want` of the scope searched in the database, or None: scan the chunks in NumPy."""
        ...

    async def messages(self, ids: list[int]) -> list[MessageRow]:
        """The complete messages with these ids."""
        ...

    async def recent_turns(self, context_id: str, budget_tokens: int) -> tuple[list[Turn], bool]: ...

    async def turns_of(self, context_id: str, message_ids: list[int]) -> list[Turn]: ...

    async def lexical(self, text: str, k: int, *, context_id: str | None = None, component: str | None = None,
                      max_id: int | None = None) -> list[Hit]: ...


class SqliteMemory:
    """MemoryStore on a SQLite context store's worker (rhetor.context.sqlite.SqliteContextStore.run)."""

    def __init__(self, runner: SqlRunner) -> None:
        self.runner = runner

    async def backlog(self, model: str, after_id: int, limit: int) -> tuple[int, list[Pending]]:
        return await self.runner.run(lambda c: backlog_batch(c, model, after_id, limit, with_top=True))

    async def save(self, model: str, ids: list[int], contexts: list[str], matrix: Matrix,
                   cache: ScopeCache) -> list[int]:
        def work(conn: Any) -> list[int]:  # on the worker thread, in this order: a scope load never passes it
            stored = save_vectors(conn, model, ids, matrix)
            keep = set(stored)
            rows = [i for i, mid in enumerate(ids) if mid in keep]
            cache.add([contexts[i] for i in rows], [ids[i] for i in rows], matrix[rows])
            return stored

        return await self.runner.run(work)

    async def counts(self, model: str, context_id: str | None) -> tuple[int, int]:
        return await self.runner.run(lambda c: counts(c, model, context_id))

    async def scope(self, cache: ScopeCache, context_id: str) -> Scope:
        found = cache.get(context_id)
        if found is not None:
            return found
        return await self.runner.run(lambda c: cache.load(c, context_id))

    async def chunk(self, model: str, after_id: int, *, context_id: str | None, component: str | None,
                    below: int | None) -> tuple[Ids, list[bytes]]:
        return await self.runner.run(functools.partial(read_chunk, model=model, after_id=after_id,
                                                       context_id=context_id, component=component, below=below))

    async def scan(self, model: str, query: NDArray[np.float32], want: int, *, context_id: str | None,
                   component: str | None, below: int | None) -> Found | None:
        return None

    async def messages(self, ids: list[int]) -> list[MessageRow]:
        def read(conn: Any) -> list[MessageRow]:
            marks = ",".join("?" * len(ids))
            rows = conn.execute(f"SELECT id, context_id, role, content, timestamp FROM messages WHERE id IN "
                                f"({marks}) AND status = 'complete'", ids).fetchall()
            return [(int(i), c, r, t, ts) for i, c, r, t, ts in rows]

        return await self.runner.run(read) if ids else []

    async def recent_turns(self, context_id: str, budget_tokens: int) -> tuple[list[Turn], bool]:
        return await self.runner.run(lambda c: recent_turns(c, context_id, budget_tokens))

    async def turns_of(self, context_id: str, message_ids: list[int]) -> list[Turn]:
        return await self.runner.run(lambda c: turns_of(c, context_id, message_ids))

    async def lexical(self, text: str, k: int, *, context_id: str | None = None, component: str | None = None,
                      max_id: int | None = None) -> list[Hit]:
        return await self.runner.run(lambda c: lexical_search(c, text, k, context_id=context_id,
                                                              component=component, max_id=max_id))


def memory_store(store: MemoryStore | SqlRunner) -> MemoryStore:
    """A MemoryStore as given, or one over a SQLite context store's worker."""
    if hasattr(store, "backlog"):
        return cast(MemoryStore, store)
    return SqliteMemory(store)


__all__ = ["Found", "MemoryStore", "MessageRow", "SqlRunner", "SqliteMemory", "memory_store"]
