"""Who is asking, through which front: stamps a ChatInput with the front's name, the request id (set by
GatewayMiddleware) and the caller key id (set by the key middleware; `anonymous` without one), for the usage
ledger; and governance's `Notes` for the request (rhetor.governance.gate): the `x-rhetor-cache` directive, the
caller key's budget and cache default, and — over HTTP — the scope entry the middleware turns into response
headers. One place, so every front attributes the same way. Knows the request scope, nothing of routes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection

from rhetor.api.presented import HEADER_DICT
from rhetor.gateway import ChatInput
from rhetor.governance.cache import HEADER, cache_mode
from rhetor.governance.gate import Notes
from rhetor.governance.keys import Identity

NOTES_KEY = "rhetor_notes"  # scope state: the Notes whose headers GatewayMiddleware adds to the response
_CACHE_HEADER = HEADER.encode()


def caller(conn: HTTPConnection) -> tuple[str | None, str | None]:
    """(request id, caller key id) of an HTTP request or a WebSocket."""
    state: dict[str, Any] = conn.scope.get("state") or {}
    return state.get("request_id"), state.get("key_id")


def identity(conn: HTTPConnection) -> Identity | None:
    """The caller key's identity (placed by rhetor.api.auth), if the request presented one."""
    state: dict[str, Any] = conn.scope.get("state") or {}
    found: Identity | None = state.get("identity")
    return found


def attribute(inp: ChatInput, conn: HTTPConnection, front: str, request_id: str | None = None) -> ChatInput:
    """`inp`, marked with its front, its request id (`request_id` if given: a WebSocket frame's) and its key."""
    scope = conn.scope
    state: dict[str, Any] = scope.setdefault("state", {})
    # `caller` inline: the state's request id and key id
    inp.front, inp.request_id, inp.key_id = front, request_id or state.get("request_id"), state.get("key_id")
    directive = None
    found: dict[bytes, bytes] | None = scope.get(HEADER_DICT)  # the fronts' header dict, when it was built
    if found is None or _CACHE_HEADER in found:  # else no x-rhetor-cache: no scan of the header list
        for name, value in scope.get("headers", ()):
            if name == _CACHE_HEADER:
                directive = cache_mode(value.decode("latin-1"))  # a bad value: 400 naming x-rhetor-cache
    identity = state.get("identity")  # the caller key (rhetor.governance.keys.Identity), when keys are on
    if identity is None:
        inp.notes = notes = Notes(directive)
    else:  # its allowed providers/models; a key's component owns the request (usage, routes)
        inp.identity = identity
        if identity.component is not None:
            inp.component = identity.component
        cache = identity.cache  # the key's cache default (checked when the key was made: cache_mode only if set)
        inp.notes = notes = Notes(directive, identity.budget_id,
                                  None if cache is None else cache_mode(cache, "key cache"))
    if scope["type"] == "http":
        state[NOTES_KEY] = notes
    return inp


__all__ = ["NOTES_KEY", "attribute", "caller", "identity"]
