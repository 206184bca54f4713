"""Conversation storage for Rhetor: the ContextStore protocol, the SQLite default, window trimming, and
semantic memory (embedders, vectors, retrieval, the background indexer).

Nothing in this package knows of Rhetor's web layer, routing or provider wire formats (the one outward HTTP
client is the optional Engram mirror in `engram.py`, which speaks Engram's API); providers know nothing of it.
"""

from rhetor.context.sqlite import MIGRATIONS, SqliteContextStore
from rhetor.context.store import (
    MAX_CONTEXT_ID_LENGTH,
    ContextStore,
    ContextSummary,
    NewMessage,
    StoredMessage,
    component_of,
    validate_context_id,
)
from rhetor.context.window import as_messages, budget_for, fit_history, message_tokens

__all__ = [
    "MAX_CONTEXT_ID_LENGTH",
    "MIGRATIONS",
    "ContextStore",
    "ContextSummary",
    "NewMessage",
    "SqliteContextStore",
    "StoredMessage",
    "as_messages",
    "budget_for",
    "component_of",
    "fit_history",
    "message_tokens",
    "validate_context_id",
]
