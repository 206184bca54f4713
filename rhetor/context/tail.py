"""Bounded reads of a stored conversation for the reply path: the most recent whole turns that fit a token
budget, and the whole turns around given messages.

Both walk an index from a known point (`messages_by_context` backwards from the newest message; the primary
key around each message asked for), so what they cost is bounded by the budget, or by the number of turns
asked for — never by the length of the stored history. Only complete user/assistant messages are returned
(the roles a model takes back); a turn is the messages one `append_turn` stored together. Synchronous; runs
on the store's worker thread. Knows nothing of embedders, routing or HTTP.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Final

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

    def add(self, message_id: int, role: str, content: str) -> None:
        if role in ("user", "assistant"):
            msg = Message("user" if role == "user" else "assistant", content)
            self.ids.append(message_id)
            self.messages.append(msg)
            self.costs.append(message_tokens(msg))

    def reverse(self) -> None:
        self.ids.reverse()
        self.messages.reverse()
        self.costs.reverse()


def recent_turns(conn: sqlite3.Connection, context_id: str, budget_tokens: int) -> tuple[list[Turn], bool]:
    """The most recent whole complete turns whose messages fit in `budget_tokens`, oldest first, and whether
    any older complete message was left out (the conversation overflows the budget)."""
    cur = conn.execute("SELECT id, turn, role, content FROM messages WHERE context_id = ? AND status = 'complete' "
                       "ORDER BY id DESC", (context_id,))
    turns: list[Turn] = []
    used, pending, more = 0, None, False
    try:
        while not more and (rows := cur.fetchmany(FETCH)):
            for mid, number, role, content in rows:
                if pending is not None and number != pending.number:
                    if used + pending.cost > budget_tokens:
                        more = True
                        break
                    used += pending.cost
                    if pending.ids:
                        turns.append(pending)
                    pending = None
                if pending is None:
                    pending = Turn(int(number))
                pending.add(int(mid), role, content)
    finally:
        cur.close()
    if pending is not None and not more:
        if used + pending.cost > budget_tokens:
            more = True
        elif pending.ids:
            turns.append(pending)
    turns.reverse()
    for t in turns:
        t.reverse()
    return turns, more


def turns_of(conn: sqlite3.Connection, context_id: str, message_ids: list[int]) -> list[Turn]:
    """The whole complete turns of `context_id` holding these messages, oldest first."""
    if not message_ids:
        return []
    marks = ",".join("?" * len(message_ids))
    rows = conn.execute(
        "SELECT DISTINCT o.id, o.turn, o.role, o.content FROM messages h JOIN messages o "
        "ON o.id BETWEEN h.id - ? AND h.id + ? AND o.context_id = h.context_id AND o.turn = h.turn "
        f"WHERE h.id IN ({marks}) AND h.context_id = ? AND o.status = 'complete' ORDER BY o.id",
        [_TURN_SPAN, _TURN_SPAN, *message_ids, context_id],
    ).fetchall()
    turns: dict[int, Turn] = {}
    for mid, number, role, content in rows:
        turns.setdefault(int(number), Turn(int(number))).add(int(mid), role, content)
    return [t for t in turns.values() if t.ids]


__all__ = ["Turn", "recent_turns", "turns_of"]
