"""Lexical search over stored messages: SQLite FTS5 (porter stemming, bm25 ranking), the fallback when no
embedder is available or ready.

The caller's text never reaches FTS5's query syntax: it is cut into words, stop words dropped, and each
word quoted, OR-ed together. Synchronous; runs on the store's worker thread. Knows nothing of embedders,
routing or HTTP.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS: Final = 32
STOP_WORDS: Final = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in into is it its "
    "me my no not of on or our she so than that the their them then there these they this to too us was we "
    "were what when where which who why will with would you your".split()
)


@dataclass(slots=True)
class Hit:
    """A stored message found by a search, with its score (cosine, or -bm25 for lexical)."""

    id: int
    context_id: str
    role: str
    content: str
    timestamp: str
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "context_id": self.context_id, "role": self.role, "content": self.content,
                "timestamp": self.timestamp, "score": round(self.score, 4)}


def fts_query(text: str) -> str | None:
    """`text` as a safe FTS5 query (quoted terms joined by OR), or None when it has no searchable word."""
    terms: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) > 1 and word not in STOP_WORDS and word not in terms:
            terms.append(word)
        if len(terms) >= MAX_TERMS:
            break
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


def lexical_search(conn: sqlite3.Connection, text: str, k: int, *, context_id: str | None = None,
                   component: str | None = None, max_id: int | None = None) -> list[Hit]:
    """The `k` complete messages best matching `text` by bm25, within one context, one component, or all."""
    query = fts_query(text)
    if query is None or k <= 0:
        return []
    where: list[str] = ["messages_fts MATCH ?", "m.status = 'complete'"]
    args: list[Any] = [query]
    if context_id is not None:
        where.append("m.context_id = ?")
        args.append(context_id)
    if component is not None:
        where.append("instr(m.context_id, ':') > 1 "
                     "AND lower(substr(m.context_id, 1, instr(m.context_id, ':') - 1)) = ?")
        args.append(component.lower())
    if max_id is not None:
        where.append("m.id <= ?")
        args.append(max_id)
    rows = conn.execute(
        "SELECT m.id, m.context_id, m.role, m.content, m.timestamp, bm25(messages_fts) AS rank "
        "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
        f"WHERE {' AND '.join(where)} ORDER BY rank, m.id DESC LIMIT ?",
        [*args, k],
    ).fetchall()
    return [Hit(int(i), c, r, t, ts, -float(rank)) for i, c, r, t, ts, rank in rows]


__all__ = ["STOP_WORDS", "Hit", "fts_query", "lexical_search"]
