"""The ContextStore protocol, its plain data types, and the rules every store shares.

A store keeps conversations by `context_id` and hands them back in insertion order. This module knows
nothing of SQLite, files, providers or HTTP: it is the contract the gateway codes against (house rule 6),
so a PostgreSQL or Engram-backed store can replace the SQLite default without touching callers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol, runtime_checkable

from rhetor.errors import InvalidRequestError

MAX_CONTEXT_ID_LENGTH: Final = 256
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f]")
STATUSES: Final = frozenset({"complete", "error", "cancelled"})
# The R1 JSON shape carried a fixed window size; export keeps it so old readers still parse it.
R1_MAX_TOKENS: Final = 4000


@dataclass(slots=True)
class StoredMessage:
    """One persisted message. `metadata` always carries the turn's `status`."""

    id: int
    role: str
    content: str
    timestamp: str
    metadata: dict[str, Any]


@dataclass(slots=True)
class ContextSummary:
    context_id: str
    created_at: str
    updated_at: str
    message_count: int
    component: str | None


@dataclass(slots=True)
class NewMessage:
    """A message to append; `metadata` is stored verbatim (it must be JSON-serializable)."""

    role: str
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ContextStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append_turn(
        self, context_id: str, messages: list[NewMessage], *, status: str = "complete"
    ) -> None:
        """Append all `messages` of one turn atomically: they are stored together or not at all."""
        ...

    async def history(self, context_id: str, *, complete_only: bool = True) -> list[StoredMessage]:
        """All messages in insertion order; `complete_only` drops turns that errored or were cancelled."""
        ...

    async def page(
        self, context_id: str, *, offset: int = 0, limit: int = 50
    ) -> tuple[list[StoredMessage], int]:
        """A slice of all messages (incomplete turns included) and the total message count."""
        ...

    async def list_contexts(self) -> list[ContextSummary]: ...

    async def get_summary(self, context_id: str) -> ContextSummary | None: ...

    async def delete(self, context_id: str) -> bool: ...

    async def export(self, context_id: str) -> dict[str, Any] | None:
        """The context in the original Rhetor R1 JSON shape, or None if it does not exist."""
        ...


def validate_context_id(context_id: object) -> str:
    """Return `context_id` if it is a usable id, else raise InvalidRequestError naming `context_id`.

    Ids are data (any non-empty string up to 256 characters, '/', '..' and unicode included); they are
    never turned into file paths, so no sanitising is needed beyond the length bounds. Control characters
    (newline, tab, NUL, DEL, C1) are refused: such an id could be stored but never named in a URL again.
    """
    if not isinstance(context_id, str) or not context_id:
        raise InvalidRequestError("context_id must be a non-empty string", param="context_id")
    if len(context_id) > MAX_CONTEXT_ID_LENGTH:
        raise InvalidRequestError(
            f"context_id is {len(context_id)} characters; at most {MAX_CONTEXT_ID_LENGTH} are allowed",
            param="context_id",
        )
    bad = _CONTROL.search(context_id)
    if bad is not None:
        raise InvalidRequestError(
            f"context_id must not contain control characters; found {bad.group()!r} at position {bad.start()}",
            param="context_id",
        )
    return context_id


def validate_status(status: str) -> str:
    if status not in STATUSES:
        raise InvalidRequestError(
            f"status must be one of {', '.join(sorted(STATUSES))}; got {status!r}", param="status"
        )
    return status


def component_of(context_id: str) -> str | None:
    """The Tekton component named by an id's prefix before the first ':' (None without a prefix)."""
    head, sep, _ = context_id.partition(":")
    return head if sep and head else None


def utc_now() -> str:
    """An ISO 8601 UTC timestamp with microseconds, so timestamps sort in insertion order."""
    return datetime.now(UTC).isoformat()


__all__ = [
    "MAX_CONTEXT_ID_LENGTH",
    "R1_MAX_TOKENS",
    "STATUSES",
    "ContextStore",
    "ContextSummary",
    "NewMessage",
    "StoredMessage",
    "component_of",
    "utc_now",
    "validate_context_id",
    "validate_status",
]
