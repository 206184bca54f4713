"""Semantic memory for the gateway: search stored messages, and assemble what a reply sends from a
conversation's stored history — only what can fit, bringing relevant older turns back when it overflows.

`Memory` owns the embedder, the scope cache and the background indexer. Search is semantic (cosine over
vectors read per scope from the database, rhetor.context.vectors) when an embedder is configured, else
lexical (SQLite FTS5 bm25, or PostgreSQL full-text search), and every answer says which. The database behind it
is a MemoryStore (rhetor.context.memory_store: SQLite, or PostgreSQL in rhetor.storage.pg_vectors).
`window` is the reply path: it reads only the most
recent whole turns that fit the largest window of the route (rhetor.context.tail), never the whole history;
when the conversation overflows the primary target's room it keeps the recent turns (up to half of it), then
fills the rest with the older turns most relevant to the new message (at most `k_turns`, whole turns so
roles still alternate, searched in the context's cached scope — at most the cache budget of its most recent
vectors), then gives any room left back to recent history. A reply never waits for a model load: if the
embedder is not ready, or the query cannot be embedded within `QUERY_TIMEOUT_S`, that reply uses lexical
scores. Knows nothing of HTTP or routing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # NumPy loads on first use (rhetor.lazy), not at start-up
    import numpy as np
    from numpy.typing import NDArray
else:
    from rhetor.lazy import numpy as np

from rhetor.context.embedder import Embedder
from rhetor.context.indexer import Indexer
from rhetor.context.lexical import Hit
from rhetor.context.memory_store import MemoryStore, SqlRunner, memory_store
from rhetor.context.scopes import Scope, from_bytes, merge_top, search_rows
from rhetor.context.tail import Turn
from rhetor.context.vectors import SCAN_CHUNK, ScopeCache
from rhetor.observability import tracing
from rhetor.types import Message

log = logging.getLogger("rhetor.retrieval")

QUERY_TIMEOUT_S: Final = 2.0
MIN_SEMANTIC_SCORE: Final = 0.15  # below this a "relevant" turn is noise; lexical hits need only match
RECENT_SHARE: Final = 0.5
THREAD_SEARCH_ROWS: Final = 20_000  # larger searches run on a thread so the event loop stays free
DEFAULT_CACHE_BYTES: Final = 16 * 2**20  # ~42k cached vectors of 384 dimensions (int8 + scale + id)
if TYPE_CHECKING:
    Found = tuple[NDArray[np.int64], NDArray[np.float32]]


@dataclass(slots=True)
class Recall:
    """The history to send (retrieved older turns, then recent ones) and what was brought back."""

    history: list[Message]
    mode: str  # "semantic" | "lexical"
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # the stored message id of each `history` message


class Memory:
    def __init__(self, store: MemoryStore | SqlRunner, embedder: Embedder | None, *, interval_s: float = 2.0,
                 k_turns: int = 4, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.store, self.embedder, self.k_turns = memory_store(store), embedder, k_turns
        self.cache = ScopeCache(embedder.name, cache_bytes) if embedder is not None else None
        self.indexer = (Indexer(store, embedder, self.cache, interval_s=interval_s)
                        if embedder is not None and self.cache is not None else None)

    @property
    def mode(self) -> str:
        return "semantic" if self.embedder is not None else "lexical"

    def start(self) -> None:
        if self.indexer is not None:
            self.indexer.start()

    async def stop(self) -> None:
        if self.indexer is not None:
            await self.indexer.stop()
        if self.embedder is not None:
            await self.embedder.aclose()

    def notify(self) -> None:
        if self.indexer is not None:
            self.indexer.notify()

    async def status(self, context_id: str | None = None) -> dict[str, Any]:
        if self.indexer is None:
            return {"retrieval": "lexical", "embedder": None, "state": "off", "embedded": 0, "backlog": 0,
                    "indexed": 0, "cache": None, "embedder_ready": False, "last_error": None}
        return {"retrieval": "semantic", **await self.indexer.status(context_id)}

    async def search(self, query: str, *, context_id: str | None = None, component: str | None = None,
                     k: int = 5) -> tuple[str, list[Hit]]:
        """The `k` stored messages (complete turns only) most relevant to `query`, and the mode used.

        An explicit search may wait for the embedder's first load (off the event loop); a chat reply never does.
        One context is searched in its cached scope (and, past the scope's floor, by a chunked scan); a
        component or everything by a chunked scan of the table: memory stays bounded, whatever is stored.
        """
        if self.embedder is not None and self.cache is not None:
            await self.embedder.warm()
            q = (await self.embedder.embed([query]))[0]
            want = k * 2 + 8  # room for rows of deleted or unfinished turns, which the store then drops
            if context_id is not None:
                scope = await self.scope(context_id)
                found = await self._search_scope(scope, q, want)
                if scope.floor:
                    found = merge_top(found, await self._scan(q, want, context_id=context_id, below=scope.floor), want)
            else:
                found = await self._scan(q, want, component=component)
            if not len(found[0]):
                return "semantic", []
            scores = {int(i): float(s) for i, s in zip(*found, strict=True)}
            rows = await self.store.messages(list(scores))
            hits = [Hit(i, cid, role, content, ts, scores[i]) for i, cid, role, content, ts in rows]
            hits.sort(key=lambda h: -h.score)
            return "semantic", hits[:k]
        return "lexical", await self.store.lexical(query, k, context_id=context_id, component=component)

    async def scope(self, context_id: str) -> Scope:
        """The context's cached scope, read from the database on a miss."""
        assert self.cache is not None
        return await self.store.scope(self.cache, context_id)

    async def _search_scope(self, scope: Scope, q: NDArray[np.float32], want: int, *,
                            below: int | None = None) -> Found:
        def run() -> Found:
            return scope.search(q, want, below=below)

        return await asyncio.to_thread(run) if len(scope) > THREAD_SEARCH_ROWS else run()

    async def _scan(self, q: NDArray[np.float32], want: int, *, context_id: str | None = None,
                    component: str | None = None, below: int | None = None) -> Found:
        """Top `want` over every stored vector of the scope, one chunk at a time (other queries interleave on
        the store's worker between chunks); holds one chunk and the running top in memory."""
        assert self.cache is not None
        model, after, width = self.cache.model, 0, 4 * int(q.shape[-1])
        done = await self.store.scan(model, q, want, context_id=context_id, component=component, below=below)
        if done is not None:  # searched in the database (pgvector)
            return done
        best: Found = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        while True:
            ids, blobs = await self.store.chunk(model, after, context_id=context_id, component=component,
                                                below=below)
            if not len(ids):
                return best
            keep = [i for i, b in enumerate(blobs) if len(b) == width]  # another space under the name: skipped
            if keep:
                rows = from_bytes([blobs[i] for i in keep], width // 4)
                best = merge_top(best, search_rows(ids[keep], rows, q, want), want)
            after = int(ids[-1])
            if len(ids) < SCAN_CHUNK:
                return best

    async def window(self, context_id: str, text: str, *, room_tokens: int,
                     load_tokens: int) -> tuple[list[Message], Recall | None]:
        """What to send of the stored conversation before a new message `text`: the most recent whole turns
        that fit `load_tokens` (the largest window of the route; each target trims further), and a Recall
        when it overflows `room_tokens` (the primary target's room): then recent turns plus retrieved ones."""
        budget = max(room_tokens, load_tokens)
        if budget <= 0:
            return [], None
        turns, more = await self.store.recent_turns(context_id, budget)
        everything = [m for t in turns for m in t.messages]
        if not turns or (not more and sum(t.cost for t in turns) <= room_tokens):
            return everything, None
        tail = _tail_start(turns, room_tokens * RECENT_SHARE)
        if tail == 0 and not more:
            return everything, None
        boundary = turns[tail].ids[0] if tail < len(turns) else turns[-1].ids[-1] + 1
        with tracing.span("rhetor.retrieval", {"gen_ai.conversation.id": context_id}) as span:
            mode, hits = await self._older(context_id, text, boundary)
            tracing.set_attributes(span, {"rhetor.retrieval.mode": mode, "rhetor.retrieval.hits": len(hits)})
        score_of = dict(hits)
        found = await self.store.turns_of(context_id, list(score_of)) if hits else []
        ranked = sorted(((max(score_of[i] for i in t.ids if i in score_of), t) for t in found
                         if any(i in score_of for i in t.ids)), key=lambda x: (-x[0], -x[1].number))
        remaining = room_tokens - sum(t.cost for t in turns[tail:])
        chosen: dict[int, tuple[float, Turn]] = {}
        for score, turn in ranked:
            if len(chosen) >= self.k_turns:
                break
            if turn.cost <= remaining:
                chosen[turn.number] = (score, turn)
                remaining -= turn.cost
        while tail > 0 and turns[tail - 1].number not in chosen:  # leftover room goes back to recent history
            if turns[tail - 1].cost > remaining:
                break
            remaining -= turns[tail - 1].cost
            tail -= 1
        picked = [chosen[n] for n in sorted(chosen)]
        history = [m for _, t in picked for m in t.messages] + [m for t in turns[tail:] for m in t.messages]
        ids = [i for _, t in picked for i in t.ids] + [i for t in turns[tail:] for i in t.ids]
        while history and history[0].role == "assistant":
            history, ids = history[1:], ids[1:]
        retrieved = [{"id": i, "role": m.role, "score": round(score_of.get(i, s), 4)}
                     for s, t in picked for i, m in zip(t.ids, t.messages, strict=True)]
        return history, Recall(history, mode, retrieved, ids)

    async def _older(self, context_id: str, text: str, boundary: int) -> tuple[str, list[tuple[int, float]]]:
        """The messages before `boundary` most relevant to `text`, best first: semantic when possible now
        (within the context's cached scope), else lexical."""
        want = self.k_turns * 4 + 8
        if self.embedder is not None and self.cache is not None:
            if self.embedder.ready():
                try:
                    q = (await asyncio.wait_for(self.embedder.embed([text]), QUERY_TIMEOUT_S))[0]
                    scope = await self.scope(context_id)
                    ids = scope.rows()[0]
                    if len(ids) and ids[0] < boundary:
                        top, scores = await self._search_scope(scope, q, want, below=boundary)
                        return "semantic", [(int(i), float(s)) for i, s in zip(top, scores, strict=True)
                                            if s >= MIN_SEMANTIC_SCORE]
                except Exception as exc:  # never fail a reply over memory: fall back to lexical
                    log.warning("query embedding failed (%s); using lexical retrieval", exc)
            else:
                self.notify()  # the indexer loads the model in the background
        hits = await self.store.lexical(text, want, context_id=context_id, max_id=boundary - 1)
        return "lexical", [(h.id, h.score) for h in hits]


def _tail_start(turns: list[Turn], room: float) -> int:
    """The first turn of the most recent whole turns that fit in `room`."""
    start, used = len(turns), 0
    while start > 0:
        cost = turns[start - 1].cost
        if used + cost > room:
            break
        used += cost
        start -= 1
    return start


__all__ = ["DEFAULT_CACHE_BYTES", "MIN_SEMANTIC_SCORE", "QUERY_TIMEOUT_S", "Hit", "Memory", "Recall"]
