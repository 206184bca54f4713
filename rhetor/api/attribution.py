"""Who is asking, through which front: stamps a ChatInput with the front's name, the request id (set by
GatewayMiddleware) and the caller key id (set by the key middleware; `anonymous` without one), for the usage
ledger. One place, so every front attributes the same way. Knows the request scope, nothing of routes.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import HTTPConnection

from rhetor.gateway import ChatInput


def caller(conn: HTTPConnection) -> tuple[str | None, str | None]:
    """(request id, caller key id) of an HTTP request or a WebSocket."""
    state: dict[str, Any] = conn.scope.get("state") or {}
    return state.get("request_id"), state.get("key_id")


def attribute(inp: ChatInput, conn: HTTPConnection, front: str, request_id: str | None = None) -> ChatInput:
    """`inp`, marked with its front, its request id (`request_id` if given: a WebSocket frame's) and its key."""
    rid, key = caller(conn)
    inp.front, inp.request_id, inp.key_id = front, request_id or rid, key
    return inp


__all__ = ["attribute", "caller"]
