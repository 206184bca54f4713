"""Caller keys at the edge: a pure-ASGI middleware that resolves the key a request presents (static
RHETOR_API_KEYS, a virtual key, or RHETOR_ADMIN_KEY) to an `Identity` placed in the scope state (`identity`,
`key_id`, `key_digest`) for the fronts, the usage ledger and the budgets, and admits the request under the key's
(and its component's) RPM/TPM limits. Keys are read as each front's clients send them: `Authorization: Bearer`,
`x-api-key`, the WebSocket handshake's headers, or `?api_key=` (removed from the query before anything logs it).

With no key configured at all Rhetor stays open as before (a presented key is then ignored) and pays one
attribute check per request. Health and readiness are exempt, and so are CORS preflights. A refusal is in the
caller's API format: Anthropic's under /v1/messages, OpenAI's under the rest of /v1, the LLM Adapter's `{error}`
on the legacy routes, the native envelope elsewhere; a WebSocket is accepted, sent one ERROR frame (readable by
both WebSocket protocols) and closed with 1008. Limits on a WebSocket apply per request frame (`FrameGate`).
An admitted HTTP request's x-ratelimit-* headers are left in the scope state (LIMIT_HEADERS, a list of (name,
value) pairs) for GatewayMiddleware, the outer layer, to add to the response; for a key's own in-process limits,
when the server offers it (rhetor.api.header_lines), as ONE pair carrying the six headers' pre-built lines.
Keys are compared as SHA-256 digests, never logged or echoed; what a request presents is read by
rhetor.api.presented. A key seen before takes a quick way: the ring remembers it by its raw Authorization header
(KeyRing.by_header, emptied by every reload; keys with no expiry and no allowed_routes) and the request goes
straight to its limits. Knows nothing of handlers, providers or the gateway.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from rhetor.api.header_lines import EXTENSION
from rhetor.api.header_lines import NAME as LINES
from rhetor.api.presented import HEADER_DICT, SIZES, query_key, read, size_of
from rhetor.errors import AuthenticationError, PermissionDeniedError, RateLimitedError, RhetorError
from rhetor.governance.access import Access, Admission
from rhetor.governance.keys import Identity

EXEMPT = frozenset({"/health", "/api/health", "/api/v1/health", "/ready", "/api/ready", "/api/v1/ready"})
UI_PREFIX = "/ui"  # the dashboard checks the key itself (rhetor.ui.routes): a browser's page load sends no header
LEGACY = frozenset({"/message", "/chat", "/stream", "/provider", "/providers", "/api/provider", "/api/providers"})
NO_HEADERS: dict[bytes, bytes] = {}  # (never written: the quick way's header dict when there is none)
LIMIT_HEADERS = "rhetor_limit_headers"  # scope state: the x-ratelimit-* headers of the response (GatewayMiddleware)
MESSAGE = ("invalid or missing API key: send a Rhetor key as 'Authorization: Bearer <key>', 'x-api-key' "
           "or ?api_key= (WebSocket)")


def api_of(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    return "legacy" if path in LEGACY else "native"


def error_body(path: str, err: RhetorError | None = None) -> bytes:
    """A refusal in the format of the API the path belongs to, so each SDK raises its own error class."""
    err = err if err is not None else AuthenticationError(MESSAGE)
    api, status = api_of(path), err.status
    if api == "anthropic":
        kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(status, err.type)
        return orjson.dumps({"type": "error", "error": {"type": kind, "message": err.message}})
    if api == "openai":
        kind, code = {401: ("invalid_request_error", "invalid_api_key"),
                      403: ("permission_error", "permission_denied")}.get(status, (err.type, err.type))
        if isinstance(err, RateLimitedError):
            kind, code = ("tokens" if "tokens per minute" in err.message else "requests"), "rate_limit_exceeded"
        return orjson.dumps({"error": {"message": err.message, "type": kind, "param": None, "code": code}})
    if api == "legacy":
        return orjson.dumps({"error": err.message, "error_type": err.type, "context": None,
                             "timestamp": datetime.now(UTC).isoformat()})
    return orjson.dumps({"error": err.to_dict()})


def ws_error_frame(err: RhetorError) -> str:
    """One ERROR frame both WebSocket protocols read: the flat fields and the envelope's payload."""
    fields = {"error": err.message, "error_type": err.type}
    return orjson.dumps({"type": "ERROR", "request_id": None, **fields, "source": "SYSTEM", "target": "UI",
                         "timestamp": datetime.now(UTC).isoformat(), "payload": {**fields, "context": None}}).decode()


def refusal(admission: Admission, identity: Identity | None) -> RateLimitedError:
    v = admission.verdict
    who = (f"key {identity.name!r} ({identity.key_id})" if identity is not None and admission.refused_by ==
           identity.key_id else (admission.refused_by or "this caller"))
    return RateLimitedError(v.message(who), retry_after=v.retry_after)


async def _refuse(scope: Scope, receive: Receive, send: Send, err: RhetorError,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    if scope["type"] == "websocket":
        if (await receive())["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": ws_error_frame(err)})
            await send({"type": "websocket.close", "code": 1008, "reason": err.type})
        return
    body = error_body(scope["path"], err)
    out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    if err.status == 401:
        out.append((b"www-authenticate", b'Bearer realm="rhetor"'))
    await send({"type": "http.response.start", "status": err.status, "headers": out})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access
        self.ring = access.ring
        self.component_limits = access.component_limits
        self.in_process = access.in_process  # (fixed for the process: Access picks its limiter once)
        # The quick way (below) serves keys the ring remembers by their Authorization header: only with the limits
        # in process and no component limits (fixed for the process too)
        self.quick = self.in_process is not None and not self.component_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ring = self.ring
        if not ring.required and ring.admin_digest is None and not self.component_limits:
            await self.app(scope, receive, send)  # nothing configured: open, as before
            return
        found: dict[bytes, bytes] = scope.get(HEADER_DICT) or NO_HEADERS  # (HTTP: GatewayMiddleware's header dict)
        identity = ring.by_header.get(found.get(b"authorization"))  # type: ignore[arg-type]
        if identity is not None and b"x-api-key" not in found and scope["method"] != "OPTIONS" \
                and scope["path"] not in EXEMPT and not scope["path"].startswith(UI_PREFIX):
            # The quick way: a key seen before, by its raw Authorization header (KeyRing.by_header: no expiry, no
            # allowed_routes, emptied by every reload; only with the limits in process and no component limits).
            # What the general way below does for it, without reading the headers one by one and without its
            # tests (~100 bytecodes a request, benchmarks/bytecodes.py); then its limits, as for any key
            state = scope.setdefault("state", {})
            state["identity"], state["key_id"] = identity, identity.key_id
            kind, component = "http", identity.component
            length = found.get(b"content-length")
            size = 0 if length is None else SIZES.get(length) or size_of(length)
        else:
            identity, kind = None, scope["type"]
            if kind not in ("http", "websocket") or scope["path"] in EXEMPT or scope["path"].startswith(UI_PREFIX) \
                    or (kind == "http" and scope["method"] == "OPTIONS"):
                await self.app(scope, receive, send)  # exempt
                return
            secret, header_component, size = read(scope)
            from_headers = secret is not None
            if secret is None:
                secret = query_key(scope)
            resolved = ring.resolve(secret) if secret is not None else None
            if resolved is not None:
                identity, key_digest = resolved
                if self.quick and from_headers and kind == "http":
                    left: dict[bytes, bytes] | None = scope.get(HEADER_DICT)  # (`read` leaves it: no header repeats)
                    if left is not None and b"x-api-key" not in left:
                        auth = left.get(b"authorization")
                        if auth is not None:  # the secret is this header's Bearer token: the quick way's, next time
                            ring.remember_header(auth, identity)
                if identity.allowed_routes is not None and not identity.allows_path(scope["path"]):
                    await _refuse(scope, receive, send, PermissionDeniedError(
                        f"key {identity.name!r} ({identity.key_id}) may not use {scope['path']}; its "
                        f"allowed_routes: {', '.join(identity.allowed_routes or ())}"))
                    return
                state = scope.setdefault("state", {})
                state["identity"], state["key_id"] = identity, identity.key_id
                if kind == "websocket":  # FrameGate re-checks the key by its digest on every request frame
                    state["key_digest"] = key_digest
                component = identity.component or header_component
            elif ring.required:
                await _refuse(scope, receive, send, AuthenticationError(MESSAGE))
                return
            else:
                component = header_component
        if identity is not None:
            if identity.limited:
                limiter = self.in_process
                if limiter is not None and kind == "http" and component not in self.component_limits:
                    # The common case: the key's own limits alone, in process: no Verdict or Admission built
                    # (Access.in_process). The headers ride in the scope state to GatewayMiddleware's one send
                    # wrapper (rhetor.api.middleware), which adds them to the response: no second wrapper and
                    # message copy per request (benchmarks/instructions.py)
                    tokens = size // 4
                    offer = scope.get("extensions")  # header_lines.offered, inlined: the server writes a block
                    if offer is not None and EXTENSION in offer:
                        lines = limiter.take_lines(identity.key_id, identity.rpm, identity.tpm, tokens)
                        headers = None if lines is None else [(LINES, lines)]
                    else:
                        headers = limiter.take(identity.key_id, identity.rpm, identity.tpm, tokens)
                    if headers is not None:
                        state[LIMIT_HEADERS] = headers
                        try:
                            await self.app(scope, receive, send)
                        finally:
                            if identity.tpm is not None:
                                limiter.release(identity.key_id, tokens)
                        return
                    # refused, nothing counted: `check` builds the refusal (or admits, if a slot freed meanwhile)
            elif kind == "websocket" or component not in self.component_limits:
                await self.app(scope, receive, send)
                return
        if kind == "websocket" or ((identity is None or not identity.limited)
                                   and component not in self.component_limits):
            await self.app(scope, receive, send)
            return
        access = self.access
        tokens = size // 4
        admission = access.check(identity, component, tokens) if access.answers_at_once else \
            await access.admit(identity, component, tokens)
        if admission is None:
            await self.app(scope, receive, send)
            return
        if admission.refused_by is not None:
            await _refuse(scope, receive, send, refusal(admission, identity), admission.verdict.headers)
            return
        scope.setdefault("state", {})[LIMIT_HEADERS] = admission.verdict.headers
        try:
            await self.app(scope, receive, send)
        finally:
            self.access.release(admission)


class FrameGate:
    """A WebSocket's per-request checks: its key still live (revoked or expired → refused within the key ring's
    refresh, ≤ 1 s), and the key's and component's limits. `admit` raises the refusal; `release` after."""

    def __init__(self, access: Access, scope: Scope) -> None:
        state: dict[str, Any] = scope.get("state") or {}
        self.access = access
        self.identity: Identity | None = state.get("identity")
        self.key_digest: bytes | None = state.get("key_digest")

    async def admit(self, component: str | None, size: int) -> Admission | None:
        ring = self.access.ring
        if self.key_digest is not None:
            self.identity = ring.lookup(self.key_digest)
            if self.identity is None:
                raise AuthenticationError("this socket's API key was revoked, rotated or has expired; reconnect "
                                          "with a valid key")
        elif ring.required:
            raise AuthenticationError(MESSAGE)
        identity = self.identity
        component = (identity.component if identity is not None else None) or component
        admission = await self.access.admit(identity, component, size // 4)
        if admission is not None and admission.refused_by is not None:
            raise refusal(admission, identity)
        return admission

    def release(self, admission: Admission | None) -> None:
        self.access.release(admission)


__all__ = ["EXEMPT", "LIMIT_HEADERS", "ApiKeyMiddleware", "FrameGate", "api_of", "error_body", "refusal",
           "ws_error_frame"]
