"""Which conversation a caller's context id names: no history is shared between strangers.

Tekton's adapter-era callers send a bare component id as their context (`ergon`, `terma`, or the legacy
default `default`); every Terma session, every Hephaestus tab and every tekton-llm-client sends the same few
ids. Such a *shared* id — no ':' and either `default`, a tasks.json key or a component with a system prompt —
says who is talking, not which conversation. It still selects the component (route and prompt), but:

- on a WebSocket it is scoped to the connection: `terma` → `terma:ws-<connection>` (`default` →
  `ws-<connection>`), so a socket keeps its own conversation and the next socket starts afresh;
- on HTTP it is stateless: nothing is read or recorded. HTTP carries no caller identity to scope by (every
  Tekton component calls from 127.0.0.1 over pooled connections; API keys are optional and shared), and
  Rhetor R1 never sent history to the model anyway (contracts §1), so no legacy caller relies on it.

A caller that wants a persistent conversation names it: `terma:session-42`, or any id that is not a shared
one. Replies say what happened with `context_scope` ("connection" or "stateless"). Every id is validated
here (control characters → 400) before anything runs. Knows the gateway's routing config and prompt store;
nothing of HTTP or WebSocket framing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from rhetor.context.store import validate_context_id
from rhetor.gateway import ChatInput, Gateway

DEFAULT_ID = "default"


@dataclass(frozen=True, slots=True)
class Scope:
    caller_id: str | None  # the id the caller sent
    context_id: str | None  # the conversation actually used; None = stateless
    kind: str | None = None  # None: the caller's own id; "connection" | "stateless"


def connection_token() -> str:
    """A fresh id for one WebSocket connection (the suffix of its scoped contexts)."""
    return f"ws-{secrets.token_hex(6)}"


def is_shared_id(gw: Gateway, context_id: str) -> bool:
    """A bare well-known id: `default`, a routing key or a component with a system prompt, and no ':'."""
    if ":" in context_id:
        return False
    key = context_id.strip().lower()
    return key == DEFAULT_ID or key in gw.config or gw.templates.exists(f"system.{key}")


def scope_input(gw: Gateway, inp: ChatInput, connection: str | None = None) -> Scope:
    """Rewrite `inp.context_id` (and set its component) for a shared id; `connection` None = HTTP."""
    caller = inp.context_id
    if caller is None:
        return Scope(None, None)
    validate_context_id(caller)
    if not is_shared_id(gw, caller):
        return Scope(caller, caller)
    key = caller.strip().lower()
    if inp.component is None and key != DEFAULT_ID:
        inp.component = key  # the id still selects the component's route and prompt
    if connection is None:
        inp.context_id = None
        return Scope(caller, None, "stateless")
    inp.context_id = connection if key == DEFAULT_ID else f"{caller}:{connection}"
    return Scope(caller, inp.context_id, "connection")


def annotate(reply: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """A reply's `context_id` is the caller's id when stateless, else the conversation used; says the scope."""
    if scope.kind is not None:
        reply["context_id"] = scope.caller_id if scope.context_id is None else scope.context_id
        reply["context_scope"] = scope.kind
    return reply


__all__ = ["Scope", "annotate", "connection_token", "is_shared_id", "scope_input"]
