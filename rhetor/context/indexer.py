"""The background indexer: embeds every stored message, off the reply path, and keeps cached scopes current.

One asyncio task, started in the app lifespan. Nothing is loaded at start (searches read vectors from the
database per scope, rhetor.context.vectors); it loops: take the oldest messages without a vector from this
embedder, embed them, store the vectors in one transaction and, on the same worker call, append them to the
contexts' scopes that are cached (so a scope read and an addition can never pass each other). It wakes
when the gateway records a turn (`notify`, an in-memory event: no I/O on the reply path) and every
`interval_s` for rows other processes wrote. Crash safety is by construction: progress *is* the vector
table, so a killed indexer restarts where the table says, and a batch replayed after a crash replaces
rather than duplicates. A failing embedder is retried with capped exponential backoff; the
task never dies of it. Knows nothing of HTTP or routing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

from rhetor.context.embedder import Embedder
from rhetor.context.memory_store import MemoryStore, SqlRunner, memory_store
from rhetor.context.vectors import ScopeCache

log = logging.getLogger("rhetor.indexer")

BATCH: Final = 32
MAX_BACKOFF_S: Final = 30.0


class Indexer:
    def __init__(self, store: MemoryStore | SqlRunner, embedder: Embedder, cache: ScopeCache, *,
                 interval_s: float = 2.0, batch: int = BATCH) -> None:
        self.store, self.embedder, self.cache = memory_store(store), embedder, cache
        self.interval_s, self.batch = interval_s, batch
        self.state = "idle"  # idle | embedding | error | stopped
        self.last_error: str | None = None
        self.embedded_total = 0  # vectors stored by this process
        self._wake = asyncio.Event()
        self._cursor = 0  # every message id <= cursor has a vector (or was deleted)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rhetor-indexer")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state = "stopped"

    def notify(self) -> None:
        """New messages were stored: look now rather than at the next interval. Cheap; never blocks."""
        self._wake.set()

    async def status(self, context_id: str | None = None) -> dict[str, Any]:
        model = self.embedder.name
        embedded, backlog = await self.store.counts(model, context_id)
        # every stored vector is searchable (read per scope): "indexed" is "embedded"; "cache" is what is resident
        return {"embedder": model, "state": self.state, "embedded": embedded, "backlog": backlog,
                "indexed": embedded, "cache": self.cache.stats(), "embedder_ready": self.embedder.ready(),
                "last_error": self.last_error}

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until no message is waiting (for tests and the CLI; the server never waits on this)."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = await self.status()
            if status["backlog"] == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"indexer still has {status['backlog']} messages waiting")
            self.notify()
            await asyncio.sleep(0.02)

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                done = await self._step()
                backoff, self.last_error = 0.5, None
                if not done:
                    continue
                self.state = "idle"
                await self._sleep(self.interval_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the indexer outlives any failure: log, back off, try again
                self.state, self.last_error = "error", f"{type(exc).__name__}: {exc}"
                log.warning("indexer: %s; retrying in %.1fs", self.last_error, backoff)
                await self._sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)

    async def _step(self) -> bool:
        """Embed one batch; True when nothing was waiting."""
        model, cursor, size = self.embedder.name, self._cursor, self.batch
        top, pending = await self.store.backlog(model, cursor, size)
        if not pending:
            # Nothing waits up to `top` (every message up to it is visible: SQLite has one writer; PostgreSQL's
            # store says how far committed ids reach), so the next look starts there instead of re-reading the
            # whole table on every turn recorded.
            self._cursor = max(cursor, top)
            return True
        self.state = "embedding"
        self._wake.clear()
        matrix = await self.embedder.embed([p.text for p in pending])
        ids = [p.id for p in pending]
        contexts = [p.context_id for p in pending]
        stored = await self.store.save(model, ids, contexts, matrix, self.cache)  # then the cached scopes grow
        self.embedded_total += len(stored)
        self._cursor = max(cursor, min(pending[-1].id, top))
        return False

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


__all__ = ["BATCH", "Indexer", "SqlRunner"]
