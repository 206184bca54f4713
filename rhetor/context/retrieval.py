"""Semantic memory for the gateway: search stored messages, and bring relevant older turns back into a
conversation that has outgrown the model's window.

`Memory` owns the embedder, the in-memory vector index and the background indexer. Search is semantic
(cosine over the index) when an embedder is configured, else lexical (SQLite FTS5, bm25), and every answer
says which. `recall` is the window rule: keep the recent turns (up to half the history budget), then fill
the rest with the older turns most relevant to the new message (at most `k_turns`, whole user+assistant
turns so roles still alternate), then give any room left back to recent history. A reply never waits for a
model load: if the embedder is not ready, or the query cannot be embedded within `QUERY_TIMEOUT_S`, that
reply uses lexical scores. Knows nothing of HTTP or routing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from rhetor.context.embedder import Embedder
from rhetor.context.indexer import Indexer, SqlRunner
from rhetor.context.lexical import Hit, lexical_search
from rhetor.context.store import StoredMessage
from rhetor.context.vectors import VectorIndex
from rhetor.context.window import message_tokens
from rhetor.types import Message

log = logging.getLogger("rhetor.retrieval")

QUERY_TIMEOUT_S: Final = 2.0
MIN_SEMANTIC_SCORE: Final = 0.15  # below this a "relevant" turn is noise; lexical hits need only match
RECENT_SHARE: Final = 0.5
THREAD_SEARCH_ROWS: Final = 20_000  # larger searches run on a thread so the event loop stays free


@dataclass(slots=True)
class Recall:
    """The history to send (retrieved older turns, then recent ones) and what was brought back."""

    history: list[Message]
    mode: str  # "semantic" | "lexical"
    retrieved: list[dict[str, Any]] = field(default_factory=list)


class Memory:
    def __init__(self, store: SqlRunner, embedder: Embedder | None, *, interval_s: float = 2.0,
                 k_turns: int = 4) -> None:
        self.store, self.embedder, self.k_turns = store, embedder, k_turns
        self.index = VectorIndex(embedder.name) if embedder is not None else None
        self.indexer = (Indexer(store, embedder, self.index, interval_s=interval_s)
                        if embedder is not None and self.index is not None else None)

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
                    "indexed": 0, "embedder_ready": False, "last_error": None}
        return {"retrieval": "semantic", **await self.indexer.status(context_id)}

    async def search(self, query: str, *, context_id: str | None = None, component: str | None = None,
                     k: int = 5) -> tuple[str, list[Hit]]:
        """The `k` stored messages (complete turns only) most relevant to `query`, and the mode used.

        An explicit search may wait for the embedder's first load (off the event loop); a chat reply never does.
        """
        if self.embedder is not None and self.index is not None and self.indexer is not None:
            await self.embedder.warm()
            await self.indexer.loaded.wait()
            q = (await self.embedder.embed([query]))[0]
            return "semantic", await self._semantic(q, k, context_id=context_id, component=component)
        hits = await self.store.run(lambda c: lexical_search(c, query, k, context_id=context_id,
                                                             component=component))
        return "lexical", hits

    async def _semantic(self, q: np.ndarray[Any, Any], k: int, *, context_id: str | None,
                        component: str | None) -> list[Hit]:
        index = self.index
        assert index is not None
        want = k * 2 + 8  # room for rows of deleted or unfinished turns, which the store then drops

        def run() -> list[tuple[int, float]]:
            return index.search(q, want, context_id=context_id, component=component)

        found = await asyncio.to_thread(run) if len(index) > THREAD_SEARCH_ROWS else run()
        if not found:
            return []
        scores = dict(found)
        rows = await self.store.run(lambda c: _messages_by_id(c, list(scores)))
        hits = [Hit(i, cid, role, content, ts, scores[i]) for i, cid, role, content, ts in rows]
        hits.sort(key=lambda h: -h.score)
        return hits[:k]

    async def recall(self, context_id: str, stored: list[StoredMessage], new_text: str, *,
                     room_tokens: int) -> Recall | None:
        """History for a turn whose stored conversation overflows `room_tokens`; None when it all fits."""
        msgs = [(m.id, Message("user" if m.role == "user" else "assistant", m.content)) for m in stored
                if m.role in ("user", "assistant")]
        costs = [message_tokens(m) for _, m in msgs]
        if sum(costs) <= room_tokens:
            return None
        turns = _turns(msgs)
        tail = _tail_start(turns, costs, room_tokens * RECENT_SHARE)
        older = turns[:tail]
        if not older:
            return None
        older_ids = [msgs[i][0] for t in older for i in t]
        mode, scores = await self._score(context_id, new_text, older_ids)
        per_turn = [(max((scores[msgs[i][0]] for i in t if msgs[i][0] in scores), default=None), n)
                    for n, t in enumerate(older)]
        ranked = sorted(((s, n) for s, n in per_turn if s is not None), key=lambda x: (-x[0], -x[1]))
        remaining = room_tokens - sum(costs[i] for t in turns[tail:] for i in t)
        chosen: dict[int, float] = {}
        for score, n in ranked:
            if len(chosen) >= self.k_turns:
                break
            cost = sum(costs[i] for i in older[n])
            if cost <= remaining:
                chosen[n] = score
                remaining -= cost
        while tail > 0 and (tail - 1) not in chosen:  # leftover room goes back to recent history
            cost = sum(costs[i] for i in turns[tail - 1])
            if cost > remaining:
                break
            remaining -= cost
            tail -= 1
        picked = sorted(n for n in chosen if n < tail)
        history = [msgs[i][1] for n in picked for i in turns[n]] + [msgs[i][1] for t in turns[tail:] for i in t]
        while history and history[0].role == "assistant":
            history = history[1:]
        retrieved = [{"id": msgs[i][0], "role": msgs[i][1].role,
                      "score": round(scores.get(msgs[i][0], chosen[n]), 4)} for n in picked for i in turns[n]]
        return Recall(history, mode, retrieved)

    async def _score(self, context_id: str, text: str, ids: list[int]) -> tuple[str, dict[int, float]]:
        """Scores of the listed messages against `text`: semantic when possible now, else lexical."""
        if self.embedder is not None and self.index is not None:
            if self.embedder.ready():
                try:
                    q = (await asyncio.wait_for(self.embedder.embed([text]), QUERY_TIMEOUT_S))[0]
                    scores = {i: s for i, s in self.index.scores(q, ids).items() if s >= MIN_SEMANTIC_SCORE}
                    if scores or any(self.index.has(i) for i in ids):
                        return "semantic", scores
                except Exception as exc:  # never fail a reply over memory: fall back to lexical
                    log.warning("query embedding failed (%s); using lexical retrieval", exc)
            else:
                self.notify()  # the indexer loads the model in the background
        limit, top = len(ids), max(ids)
        wanted = set(ids)
        hits = await self.store.run(lambda c: lexical_search(c, text, limit, context_id=context_id, max_id=top))
        return "lexical", {h.id: h.score for h in hits if h.id in wanted}


def _turns(msgs: list[tuple[int, Message]]) -> list[list[int]]:
    """Indices grouped into turns: each starts at a user message and takes the replies after it."""
    turns: list[list[int]] = []
    for i, (_, m) in enumerate(msgs):
        if m.role == "user" or not turns:
            turns.append([i])
        else:
            turns[-1].append(i)
    return turns


def _tail_start(turns: list[list[int]], costs: list[int], room: float) -> int:
    """The first turn of the most recent whole turns that fit in `room`."""
    start, used = len(turns), 0
    while start > 0:
        cost = sum(costs[i] for i in turns[start - 1])
        if used + cost > room:
            break
        used += cost
        start -= 1
    return start


def _messages_by_id(conn: Any, ids: list[int]) -> list[tuple[int, str, str, str, str]]:
    marks = ",".join("?" * len(ids))
    rows = conn.execute(f"SELECT id, context_id, role, content, timestamp FROM messages WHERE id IN ({marks}) "
                        "AND status = 'complete'", ids).fetchall()
    return [(int(i), c, r, t, ts) for i, c, r, t, ts in rows]


__all__ = ["MIN_SEMANTIC_SCORE", "QUERY_TIMEOUT_S", "Hit", "Memory", "Recall"]
