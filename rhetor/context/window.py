"""Pure context-window arithmetic: how much stored history fits in front of the current turn.

No I/O and no state: the gateway loads history from a ContextStore, then asks these functions what to
send. Token counts are the cheap offline estimate from `rhetor.providers.base`, never vendor tokenizers,
so this module knows nothing of any provider, of storage, or of HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from rhetor.context.store import StoredMessage
from rhetor.providers.base import estimate_tokens
from rhetor.types import Message, Role

# Roles and separators cost a few tokens per message on every vendor; without this, many short
# messages would overrun a budget their contents alone fit in.
MESSAGE_OVERHEAD_TOKENS: Final = 4
DEFAULT_OUTPUT_TOKENS: Final = 1024
SAFETY_MARGIN: Final = 0.05
MIN_BUDGET_TOKENS: Final = 256

_ROLES: Final[dict[str, Role]] = {"system": "system", "user": "user", "assistant": "assistant"}


def message_tokens(message: Message) -> int:
    """The estimated prompt cost of one message."""
    return estimate_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS


def budget_for(context_window: int, max_tokens: int | None) -> int:
    """Prompt tokens available: the window minus the reply's room and a 5% margin, never below 256."""
    reply = max_tokens or DEFAULT_OUTPUT_TOKENS
    margin = int(context_window * SAFETY_MARGIN)
    return max(MIN_BUDGET_TOKENS, context_window - reply - margin)


def fit_history(
    history: list[Message], new: list[Message], *, budget_tokens: int, system: str | None = None
) -> list[Message]:
    """`new` in full, preceded by the most recent `history` that fits in `budget_tokens`.

    The system prompt and `new` are always counted and always kept (even over budget: the current turn
    is the caller's request, trimming it would change what was asked). History is dropped oldest first
    and kept as a contiguous recent tail; a leading assistant message is dropped too, so the replayed
    conversation starts with the user.
    """
    used = sum(message_tokens(m) for m in new)
    if system:
        used += estimate_tokens(system)
    start = len(history)
    while start > 0:
        cost = message_tokens(history[start - 1])
        if used + cost > budget_tokens:
            break
        used += cost
        start -= 1
    kept = history[start:]
    while kept and kept[0].role == "assistant":
        kept = kept[1:]
    return [*kept, *new]


def as_messages(stored: Iterable[StoredMessage]) -> list[Message]:
    """Stored messages as model messages; roles a model cannot take (e.g. 'tool' notes) are skipped."""
    out: list[Message] = []
    for m in stored:
        role = _ROLES.get(m.role)
        if role is not None:
            out.append(Message(role=role, content=m.content))
    return out


__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "MESSAGE_OVERHEAD_TOKENS",
    "MIN_BUDGET_TOKENS",
    "SAFETY_MARGIN",
    "as_messages",
    "budget_for",
    "fit_history",
    "message_tokens",
]
