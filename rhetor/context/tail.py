"""Bounded reads of a stored conversation for the reply path: the most recent whole turns that fit a token
budget, and the whole turns around given messages.

Both walk an index from a known point (`messages_by_context` backwards from the newest message; the primary
key around each message asked for), so what they cost is bounded by the budget, or by the number of turns
asked for — never by the length of the stored history. Only complete user/assistant messages are returned
(the roles a model takes back), their kept images with them (rhetor.context.parts); a turn is the messages one
`append_turn` stored together. Synchronous; runs
on the store's worker thread. Knows nothing of embedders, routing or HTTP.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from rhetor.context.parts import stored_message
from rhetor.context.window import message_tokens
from rhetor.types import Message

FETCH: Final = 256
# A turn's messages are inserted together by one writer, so their ids are contiguous (see vectors.py).
_TURN_SPAN: Final = 16


@dataclass(slots=True)
class Turn:
    """One stored turn: its number within the context, and its messages (ids, model messages, token costs)."""

    number: int
    ids: list[int] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    costs: list[int] = field(default_factory=list)

    @property
    def cost(self) -> int:
        return sum(self.costs)

    def add(self, message_id: int, role: str, content: str, meta: str | None = None) -> None:
        """Add a stored row; `meta` (its metadata JSON) brings back its images (rhetor.context.parts)."""
        if role in ("user", "assistant"):
            parts = orjson.loads(meta) if meta and '"parts"' in meta else None
            msg = stored_message(role, content, parts)
            self.ids.append(message_id)
            self.messages.append(msg)
            self.costs.append(message_tokens(msg))

    def reverse(self) -> None:
        self.ids.reverse()
        self.messages.reverse()
        self.costs.reverse()


class RecentTurns:
    """Collects the most recent whole turns that fit `budget_tokens` from complete user/assistant rows fed newest
    first, (id, turn, role, content), one batch at a time: `feed` says when enough was read. Shared by the
    SQLite and PostgreSQL stores."""

    def __init__(self, budget_tokens: int) -> None:
        self.budget = budget_tokens
        self.turns: list[Turn] = []
        self.used, self.more = 0, False
        self.pending: Turn | None = None

    def feed(self, rows: list[tuple[Any, ...]]) -> bool:
        """Take a batch of (id, turn, role, content[, metadata JSON]); True once the budget is full (read no more)."""
        for row in rows:
            mid, number, role, content = row[:4]
            pending = self.pending
            if pending is not None and number != pending.number:
                if self.used + pending.cost > self.budget:
                    self.more = True
                    return True
                self.used += pending.cost
                if pending.ids:
                    self.turns.append(pending)
                self.pending = pending = None
            if pending is None:
                self.pending = pending = Turn(int(number))
            pending.add(int(mid), role, content, row[4] if len(row) > 4 else None)
        return False

    def result(self) -> tuple[list[Turn], bool]:
        """The turns, oldest first, and whether an older complete message was left out."""
        pending, turns = self.pending, self.turns
        if pending is not None and not self.more:
            if self.used + pending.cost > self.budget:
                self.more = True
            elif pending.ids:
                turns.append(pending)
        turns.reverse()
        for t in turns:
            t.reverse()
        return turns, self.more


def recent_turns(conn: sqlite3.Connection, context_id: str, budget_tokens: int) -> tuple[list[Turn], bool]:
    """The most recent whole complete turns whose messages fit in `budget_tokens`, oldest first, and whether
    any older complete message was left out (the conversation overflows the budget)."""
    cur = conn.execute("SELECT id, turn, role, content, metadata FROM messages WHERE context_id = ? "
                       "AND status = 'complete' ORDER BY id DESC", (context_id,))
    recent = RecentTurns(budget_tokens)
    try:
        while (rows := cur.fetchmany(FETCH)) and not recent.feed(rows):
            pass
    finally:
        cur.close()
    return recent.result()


def turns_of(conn: sqlite3.Connection, context_id: str, message_ids: list[int]) -> list[Turn]:
    """The whole complete turns of `context_id` holding these messages, oldest first."""
    if not message_ids:
        return []
    marks = ",".join("?" * len(message_ids))
    rows = conn.execute(
        "SELECT DISTINCT o.id, o.turn, o.role, o.content, o.metadata FROM messages h JOIN messages o "
        "ON o.id BETWEEN h.id - ? AND h.id + ? AND o.context_id = h.context_id AND o.turn = h.turn "
        f"WHERE h.id IN ({marks}) AND h.context_id = ? AND o.status = 'complete' ORDER BY o.id",
        [_TURN_SPAN, _TURN_SPAN, *message_ids, context_id],
    ).fetchall()
    turns: dict[int, Turn] = {}
    for mid, number, role, content, meta in rows:
        turns.setdefault(int(number), Turn(int(number))).add(int(mid), role, content, meta)
    return [t for t in turns.values() if t.ids]


__all__ = ["FETCH", "RecentTurns", "Turn", "recent_turns", "turns_of"]
