"""Pure context-window arithmetic: how much stored history fits in front of the current turn.

No I/O and no state: the gateway loads history from a ContextStore, then asks these functions what to
send. Token counts are the cheap offline estimate from `rhetor.providers.base`, never vendor tokenizers: text
by its length, a tool call by its name and arguments, an image (or an image placeholder) as `IMAGE_TOKENS`.
Trimming never separates an assistant's tool calls from the tool results answering them: they are one unit,
kept or dropped together (`paired` also drops a result whose call is gone, and a call left unanswered).
Knows nothing of any provider, of storage, or of HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
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

# An image's prompt cost, estimated without decoding it: Anthropic bills ~(width * height) / 750, ~1,600 for the
# largest image it takes unresized (~1.15 megapixels); OpenAI's high detail 2048x2048 is 1,105. The larger figure,
# so a window holding images is not overrun.
IMAGE_TOKENS: Final = 1600

_ROLES: Final[dict[str, Role]] = {"system": "system", "user": "user", "assistant": "assistant"}


def message_tokens(message: Message) -> int:
    """The estimated prompt cost of one message: its text, its tool calls, its images."""
    cost = estimate_tokens(message.content) + MESSAGE_OVERHEAD_TOKENS
    if message.tool_calls:
        cost += sum(estimate_tokens(c.name) + estimate_tokens(c.arguments) for c in message.tool_calls)
    if message.images:
        cost += IMAGE_TOKENS * len(message.images)
    return cost


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
    is the caller's request, trimming it would change what was asked); so is, when `new` opens with tool
    results, the exchange they answer (history from its last user message). History is dropped oldest
    first, a tool-call unit (an assistant's calls and their results) whole, and kept as a contiguous recent
    tail; leading assistant and tool messages are dropped too, so the replayed conversation starts with the user.
    """
    if not history:  # nothing to trim, and `new` is never changed (paired's keep_last): the stateless request
        return list(new)
    used = sum(message_tokens(m) for m in new)
    if system:
        used += estimate_tokens(system)
    start = len(history)
    answering = bool(new) and new[0].role == "tool"
    if answering:  # answers to the last assistant's calls: that exchange stays whole
        start = max((i for i, m in enumerate(history) if m.role == "user"), default=0)
        used += sum(message_tokens(m) for m in history[start:])
    while start > 0:
        first = _unit_start(history, start - 1)
        cost = sum(message_tokens(m) for m in history[first:start])
        if used + cost > budget_tokens:
            break
        used += cost
        start = first
    kept = history[start:]
    if not answering or any(m.role == "user" for m in kept):  # (an exchange without its user message stays whole)
        while kept and kept[0].role in ("assistant", "tool"):
            kept = kept[1:]
    return paired([*kept, *new], keep_last=len(new))


def _unit_start(history: list[Message], last: int) -> int:
    """The first index of the unit ending at `last`: tool results go with the assistant message that called."""
    i = last
    while i > 0 and history[i].role == "tool":
        i -= 1
    return i if history[i].role == "assistant" and history[i].tool_calls and i < last else last


def paired(messages: list[Message], *, keep_last: int = 0) -> list[Message]:
    """`messages` with every tool result preceded by the assistant call it answers and every call answered: a
    result whose call is gone is dropped, a call without its result is removed from its message (the message
    too when nothing else is left), so no vendor refuses the conversation for a dangling tool_use/tool_result.
    The last `keep_last` messages (the caller's new turn) are never changed: a mistake there is the vendor's to
    refuse, not Rhetor's to hide."""
    answered = {m.tool_call_id for m in messages if m.role == "tool"}
    called: set[str] = set()
    out: list[Message] = []
    fixed = len(messages) - keep_last
    for i, m in enumerate(messages):
        if i >= fixed:
            pass
        elif m.role == "assistant" and m.tool_calls:
            calls = [c for c in m.tool_calls if c.id in answered]
            if len(calls) != len(m.tool_calls):
                if not calls and not m.content:
                    continue
                m = replace(m, tool_calls=calls or None)
            called.update(c.id for c in calls)
        elif m.role == "tool" and m.tool_call_id not in called:
            continue
        out.append(m)
    return out


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
    "IMAGE_TOKENS",
    "MESSAGE_OVERHEAD_TOKENS",
    "MIN_BUDGET_TOKENS",
    "SAFETY_MARGIN",
    "as_messages",
    "budget_for",
    "fit_history",
    "message_tokens",
    "paired",
]
