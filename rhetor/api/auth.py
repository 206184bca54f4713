"""Optional caller keys (RHETOR_API_KEYS): a pure-ASGI middleware that admits a request only with one of the
configured keys, as `Authorization: Bearer <key>` or `x-api-key: <key>`.

Installed only when keys are configured, so an open Rhetor pays nothing. Health and readiness are exempt (a
launcher probes them without keys), and so are CORS preflights. Keys are compared in constant time against
every configured key, and never logged or echoed. A refusal is a 401 in the caller's API format: Anthropic's
under /v1/messages, OpenAI's under the rest of /v1, the native envelope elsewhere; a WebSocket is closed with
policy-violation 1008 before it is accepted. Knows nothing of routes' handlers, providers or the gateway.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT = frozenset({"/health", "/api/health", "/api/v1/health", "/ready", "/api/ready", "/api/v1/ready"})
UI_PREFIX = "/ui"  # the dashboard checks the key itself (rhetor.ui.routes): a browser's page load sends no header
MESSAGE = "invalid or missing API key: send one of RHETOR_API_KEYS as 'Authorization: Bearer <key>' or 'x-api-key'"


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request presents: x-api-key, else the Bearer token of Authorization."""
    bearer: bytes | None = None
    for name, value in headers:
        if name == b"x-api-key" and value.strip():
            return value.strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip() or None
    return bearer


def digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def key_matches(presented: bytes | None, digests: tuple[bytes, ...]) -> bool:
    """Constant time: SHA-256 digests (equal lengths, so not even a key's length leaks) compared with
    hmac.compare_digest against every configured key, with no early exit."""
    if presented is None:
        return False
    mine = digest(presented)
    found = False
    for key in digests:
        found |= hmac.compare_digest(mine, key)
    return found


def error_body(path: str) -> bytes:
    """A 401 body in the format of the API the path belongs to, so each SDK raises its own error class."""
    if path.startswith("/v1/messages"):
        return orjson.dumps({"type": "error", "error": {"type": "authentication_error", "message": MESSAGE}})
    if path.startswith("/v1/"):
        return orjson.dumps({"error": {"message": MESSAGE, "type": "invalid_request_error", "param": None,
                                       "code": "invalid_api_key"}})
    return orjson.dumps({"error": {"type": "authentication_error", "message": MESSAGE}})


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: Iterable[str]) -> None:
        self.app = app
        self.digests = tuple(digest(k.encode("utf-8")) for k in keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] in EXEMPT or scope["path"].startswith(UI_PREFIX) or \
                (kind == "http" and scope["method"] == "OPTIONS"):
            await self.app(scope, receive, send)
            return
        if key_matches(presented_key(scope.get("headers", [])), self.digests):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid or missing API key"})
            return
        body = error_body(scope["path"])
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b'Bearer realm="rhetor"')]})
        await send({"type": "http.response.body", "body": body})


__all__ = ["EXEMPT", "ApiKeyMiddleware", "digest", "error_body", "key_matches", "presented_key"]
