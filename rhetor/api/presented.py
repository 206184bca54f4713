"""What a request presents at the edge, read from its ASGI scope: the caller key (`Authorization: Bearer`,
`x-api-key`, or `?api_key=`, removed from the query before anything logs it), the `x-rhetor-component` header and
the declared body size, plus the constant-time check of a key against SHA-256 digests. `read` is the hot path's
one pass over the headers (through their dict in the scope, HEADER_DICT, which GatewayMiddleware leaves there, or
it does, for the fronts).
Split from rhetor.api.auth, which decides what to do with what is read here. Never logs or returns a key's text
beyond the caller that asked; knows nothing of key stores, limits, handlers or providers.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode

from starlette.types import Scope

from rhetor.governance.keys import digest

# Scope key: the request's headers as a dict, the first of each name winning (read by the fronts through
# rhetor.api.compat.common.header); made here when no header repeats, so a request builds it once, not twice
HEADER_DICT = "rhetor.headers"
MEMO = 1024  # bounded memos of header values: a client sends the same few (bearer token, body size) again and again


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request's headers present: x-api-key, else the Bearer token of Authorization."""
    bearer: bytes | None = None
    for name, value in headers:
        if name == b"x-api-key" and value.strip():
            return value.strip()
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            bearer = value[7:].strip() or None
    return bearer


def key_matches(presented: bytes | None, digests: tuple[bytes, ...]) -> bool:
    """Constant time: SHA-256 digests compared with hmac.compare_digest against every key, no early exit."""
    if presented is None:
        return False
    mine = digest(presented)
    found = False
    for key in digests:
        found |= hmac.compare_digest(mine, key)
    return found


def query_key(scope: Scope) -> bytes | None:
    """`?api_key=` of the query string, which is then removed from the scope so no access log shows it."""
    qs: bytes = scope.get("query_string", b"")
    if b"api_key=" not in qs:
        return None
    pairs = parse_qsl(qs.decode("latin-1"), keep_blank_values=True)
    found = next((v for k, v in pairs if k == "api_key"), None)
    scope["query_string"] = urlencode([(k, v) for k, v in pairs if k != "api_key"]).encode("latin-1")
    return found.encode("latin-1") if found else None


def read(scope: Scope) -> tuple[bytes | None, str | None, int]:
    """(the presented key as `presented_key` finds it, the `x-rhetor-component` header, the declared body size)."""
    found: dict[bytes, bytes] | None = scope.get(HEADER_DICT)  # GatewayMiddleware's, when no header repeats
    if found is None:
        headers = scope.get("headers", ())
        if type(headers) is not list:
            return _read_each(headers)
        found = dict(headers)  # built in C: ~90 fewer bytecodes than the loop below (callgrind: ~5k instructions)
        if len(found) != len(headers):  # a header repeated: which one counts is the loop's to say
            return _read_each(headers)
        scope[HEADER_DICT] = found  # the fronts' header dict: no second one built (~2.6k instructions)
    key = found.get(b"x-api-key")
    if key is not None:
        key = key.strip() or None
    if key is None:
        auth = found.get(b"authorization")
        if auth is not None:
            key = _BEARER.get(auth)
            if key is None:
                key = _bearer(auth)
    named = found.get(b"x-rhetor-component")
    length = found.get(b"content-length")
    size = 0 if length is None else SIZES.get(length) or size_of(length)  # (a 0 is simply parsed again)
    return key, named.decode("latin-1").strip().lower() or None if named is not None else None, size


# Memoized: the Bearer token of an Authorization value and the number a content-length says. Slicing, lower-casing
# and stripping the one, parsing the other cost ~2.5k instructions a request; a dict hit ~0.2k (callgrind)
_BEARER: dict[bytes, bytes] = {}
SIZES: dict[bytes, int] = {}


def _bearer(auth: bytes) -> bytes | None:
    key = auth[7:].strip() or None if auth[:7].lower() == b"bearer " else None
    if key is not None:  # (a value without a token is not remembered: its answer is None either way)
        if len(_BEARER) >= MEMO:
            _BEARER.clear()
        _BEARER[auth] = key
    return key


def size_of(length: bytes) -> int:
    size = int(length) if length.isdigit() else 0
    if len(SIZES) >= MEMO:
        SIZES.clear()
    SIZES[length] = size
    return size


def _read_each(headers: Iterable[tuple[bytes, bytes]]) -> tuple[bytes | None, str | None, int]:
    """`read` in one pass over the headers (some repeated): the first x-api-key with a value, else the last
    Bearer token; the first x-rhetor-component and content-length."""
    key: bytes | None = None
    bearer: bytes | None = None
    component: str | None = None
    seen_component = False
    size = -1
    for name, value in headers:
        if name == b"x-api-key":
            if key is None and value.strip():
                key = value.strip()
        elif name == b"authorization":
            if value[:7].lower() == b"bearer ":
                bearer = value[7:].strip() or None
        elif name == b"x-rhetor-component":
            if not seen_component:
                seen_component = True
                component = value.decode("latin-1").strip().lower() or None
        elif name == b"content-length" and size < 0:
            size = int(value) if value.isdigit() else 0
    return (key if key is not None else bearer), component, max(size, 0)


__all__ = ["HEADER_DICT", "MEMO", "SIZES", "digest", "key_matches", "presented_key", "query_key", "read", "size_of"]
