"""What a handler reads from the app: the Gateway the lifespan built (`app.state.gateway`). One accessor for
every front, so no front imports another to find it. Knows nothing of routes, wire shapes or providers.
"""

from __future__ import annotations

from starlette.requests import HTTPConnection

from rhetor.gateway import Gateway


def gateway(conn: HTTPConnection) -> Gateway:
    # State's dict itself, not `app.state.gateway`: that goes through State.__getattr__, a Python frame per read
    gw: Gateway = conn.scope["app"].state._state["gateway"]
    return gw


__all__ = ["gateway"]
