"""Caller keys (virtual keys): what a key may do, and the in-process ring that resolves a presented secret to the
caller's `Identity` on the hot path.

A key is a random secret shown once at creation; only its SHA-256 is stored (a 256-bit random secret needs no
slow hash, and the hot path stays a dict lookup). Its spec: a name, the component it speaks for (which then
attributes usage and picks routes and prompts), allowed providers / models / HTTP routes, RPM and TPM limits, a
budget id (read by the budgets), an expiry and free metadata. Static RHETOR_API_KEYS and RHETOR_ADMIN_KEY resolve
through the same ring. The ring is reloaded at once by the admin API and polled (≤ 0.5 s) for changes other
processes made, and an expiry is checked on every lookup: a revoked or expired key is refused within a second.
Knows nothing of HTTP, SQL or the gateway.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Annotated, Any, Literal, Protocol, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rhetor.errors import InvalidRequestError, PermissionDeniedError

SECRET_PREFIX = "rk-"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@/-]{0,127}$")
COMPONENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_METADATA_BYTES = 4096
# Presented secrets of live keys -> their SHA-256, so a returning caller is not hashed again (~6k instructions a
# request under callgrind, benchmarks/instructions.py). Only digests: the identity is looked up anew every time, so
# a revoked, rotated or expired key is refused as before. Bounded; emptied when full. Never logged or listed.
DIGEST_MEMO = 1024


class _Target(Protocol):
    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...


T = TypeVar("T", bound=_Target)


def digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def shown(secret: str) -> str:
    """What listings show of a secret: its first and last characters, never enough to use it."""
    return f"{secret[:7]}...{secret[-4:]}"


def _when(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("must be an ISO 8601 time or unix seconds")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 time or unix seconds") from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise ValueError("must be an ISO 8601 time or unix seconds")


Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]], Field(max_length=256)]


class KeySpec(BaseModel):
    """What an admin may set on a key (create: `name` required; update: any subset). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    component: str | None = None
    allowed_providers: Names | None = None
    allowed_models: Names | None = None  # `provider/model`, a bare model, or globs (`anthropic/*`)
    allowed_routes: Names | None = None  # HTTP path globs: `/v1/*`, `/api/v1/chat`
    rpm: Annotated[int, Field(ge=1, le=10**9)] | None = None
    tpm: Annotated[int, Field(ge=1, le=10**12)] | None = None
    budget_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    cache: Literal["use", "refresh", "off"] | None = None  # the response cache's default for this key
    expires_at: float | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME.match(v):
            raise ValueError("1-128 letters, digits, spaces or ._:@/- starting with a letter or digit")
        return v

    @field_validator("component")
    @classmethod
    def _component(cls, v: str | None) -> str | None:
        if v is not None and not COMPONENT.match(v):
            raise ValueError("a component id: lower-case letters, digits, '-' or '_' (e.g. 'ergon')")
        return v

    @field_validator("allowed_routes")
    @classmethod
    def _routes(cls, v: list[str] | None) -> list[str] | None:
        for i, route in enumerate(v or []):
            if not route.startswith("/"):
                raise ValueError(f"[{i}] {route!r}: a route is an HTTP path (glob) starting with '/'")
        return v

    @field_validator("expires_at", mode="before")
    @classmethod
    def _expires(cls, v: Any) -> float | None:
        return _when(v)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and len(orjson.dumps(v)) > MAX_METADATA_BYTES:
            raise ValueError(f"at most {MAX_METADATA_BYTES} bytes of JSON")
        return v


def parse_spec(data: Any, *, creating: bool) -> KeySpec:
    """A KeySpec from a request body; a 400 naming the field otherwise."""
    if not isinstance(data, dict):
        raise InvalidRequestError("a key definition is a JSON object", param="body")
    try:
        spec = KeySpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidRequestError(f"{where}: {err['msg']}", param=where) from None
    if creating and spec.name is None:
        raise InvalidRequestError("name: a key needs a name", param="name")
    if "name" in spec.model_fields_set and spec.name is None:
        raise InvalidRequestError("name: cannot be null", param="name")
    if spec.expires_at is not None and spec.expires_at <= time.time() and "expires_at" in spec.model_fields_set:
        raise InvalidRequestError("expires_at: is in the past", param="expires_at")
    return spec


@dataclass(slots=True)
class KeyRecord:
    """A stored key: its spec and bookkeeping. The secret itself is never kept, only its SHA-256."""

    id: str
    name: str
    digest: bytes
    hint: str  # shown(secret)
    created_at: float
    spec: dict[str, Any] = field(default_factory=dict)  # KeySpec fields other than name, as set
    revoked_at: float | None = None
    updated_at: float | None = None

    def public(self, now: float | None = None) -> dict[str, Any]:
        s = self.spec
        now = time.time() if now is None else now
        expires = s.get("expires_at")
        state = "revoked" if self.revoked_at else "expired" if expires is not None and expires <= now else "active"
        return {"id": self.id, "name": self.name, "key_hint": self.hint, "state": state,
                "component": s.get("component"), "allowed_providers": s.get("allowed_providers"),
                "allowed_models": s.get("allowed_models"), "allowed_routes": s.get("allowed_routes"),
                "rpm": s.get("rpm"), "tpm": s.get("tpm"), "budget_id": s.get("budget_id"), "cache": s.get("cache"),
                "expires_at": expires, "metadata": s.get("metadata") or {}, "created_at": self.created_at,
                "updated_at": self.updated_at, "revoked_at": self.revoked_at}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request speaks for, as the fronts, the gateway, the limits and the budgets see it."""

    key_id: str
    name: str
    component: str | None = None
    allowed_providers: frozenset[str] | None = None
    allowed_models: tuple[str, ...] | None = None
    allowed_routes: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_id: str | None = None
    cache: str | None = None
    expires_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # derived once (read on every request): an RPM or TPM limit; allowed providers or models
    limited: bool = field(init=False, compare=False, repr=False)
    restricted: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limited", self.rpm is not None or self.tpm is not None)
        object.__setattr__(self, "restricted", self.allowed_providers is not None or self.allowed_models is not None)

    def live(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at

    def allows_path(self, path: str) -> bool:
        return self.allowed_routes is None or any(fnmatchcase(path, p) for p in self.allowed_routes)

    def permitted(self, targets: Sequence[T]) -> tuple[T, ...]:
        """The targets this key may call, in order; PermissionDeniedError (403) naming them when none is left."""
        kept = tuple(t for t in targets if self.allows(t.provider, t.model))
        if not kept:
            asked = ", ".join(f"{t.provider}/{t.model}" for t in targets) or "no target"
            raise PermissionDeniedError(f"key {self.name!r} ({self.key_id}) may not use {asked}; allowed providers: "
                                        f"{_listed(self.allowed_providers)}, allowed models: "
                                        f"{_listed(self.allowed_models)}", param="model")
        return kept

    def allows(self, provider: str, model: str) -> bool:
        """May this key call `provider/model`? (Entries: `provider/model`, a bare model name, or globs.)"""
        if self.allowed_providers is not None and provider not in self.allowed_providers:
            return False
        if self.allowed_models is None:
            return True
        full = f"{provider}/{model}"
        return any(fnmatchcase(full, p) or fnmatchcase(model, p) for p in self.allowed_models)

    @classmethod
    def of(cls, rec: KeyRecord) -> Identity:
        s = rec.spec
        return cls(key_id=rec.id, name=rec.name, component=s.get("component"),
                   allowed_providers=frozenset(s["allowed_providers"]) if s.get("allowed_providers") is not None
                   else None,
                   allowed_models=tuple(s["allowed_models"]) if s.get("allowed_models") is not None else None,
                   allowed_routes=tuple(s["allowed_routes"]) if s.get("allowed_routes") is not None else None,
                   rpm=s.get("rpm"), tpm=s.get("tpm"), budget_id=s.get("budget_id"), cache=s.get("cache"),
                   expires_at=s.get("expires_at"), metadata=s.get("metadata") or {})


def _listed(names: Iterable[str] | None) -> str:
    return "any" if names is None else ", ".join(sorted(names)) or "none"


ADMIN = Identity(key_id="admin", name="admin")


class KeyRing:
    """Presented secret → Identity, in memory. `load()` replaces the virtual keys (from the store's records)."""

    def __init__(self, static: tuple[str, ...] = (), admin: str | None = None) -> None:
        self._static: dict[bytes, Identity] = {}
        for secret in static:
            d = digest(secret.encode("utf-8"))
            self._static[d] = Identity(key_id="static-" + d.hex()[:8], name="RHETOR_API_KEYS")
        self.admin_digest = digest(admin.encode("utf-8")) if admin else None
        self._virtual: dict[bytes, Identity] = {}
        self._keys = dict(self._static)  # static, then virtual keys over them: one dict hit per request
        self._any_virtual = False
        # Callers must present a key: static keys are configured or a virtual key was ever created (revoked and
        # expired ones count: creating a key closes the open door for good; revoking them never reopens it).
        # An attribute, set by load(): read on every request.
        self.required = bool(self._static)
        self._by_id: dict[str, Identity] = {}
        # ids of the keys with a TPM limit, whose records count their real tokens (Access.record: a set test per
        # record, not a call of `get`; ~0.7k instructions, callgrind)
        self.tpm_ids: frozenset[str] = frozenset()
        # presented secret -> (identity, digest), for secrets that resolved (DIGEST_MEMO); emptied by every `load`,
        # so a revoked or rotated key is never answered from it (an expiry is checked on every request)
        self._resolved: dict[bytes, tuple[Identity, bytes]] = {}
        # a raw Authorization header value -> its key's identity, for the web layer's quick way (rhetor.api.auth,
        # which fills it, for keys it needs not re-check per request: no expiry, no allowed_routes); emptied by
        # every `load` like `_resolved`
        self.by_header: dict[bytes, Identity] = {}

    def load(self, records: list[KeyRecord]) -> None:
        live = [r for r in records if r.revoked_at is None]
        self._any_virtual = bool(records)
        self.required = bool(self._static) or self._any_virtual
        self._virtual = {r.digest: Identity.of(r) for r in live}
        self._keys = {**self._static, **self._virtual}
        self._by_id = {i.key_id: i for i in self._virtual.values()}
        self.tpm_ids = frozenset(i.key_id for i in self._virtual.values() if i.tpm is not None)
        self._resolved = {}
        self.by_header = {}

    def remember_header(self, value: bytes, identity: Identity) -> None:
        """`by_header[value] = identity`, bounded (DIGEST_MEMO), for an identity with no per-request check."""
        if identity.expires_at is None and identity.allowed_routes is None:
            memo = self.by_header
            if len(memo) >= DIGEST_MEMO:
                memo.clear()
            memo[value] = identity

    def resolve(self, secret: bytes) -> tuple[Identity, bytes] | None:
        """(identity, digest) of a presented secret, or None (unknown, revoked or expired)."""
        memo = self._resolved
        hit = memo.get(secret)  # a live caller's secret, as the last `load` left the keys: no hash, no look-up
        if hit is not None:
            expires = hit[0].expires_at
            return hit if expires is None or time.time() < expires else None
        d = hashlib.sha256(secret).digest()
        found = self.lookup(d)
        if found is None:
            return None  # unknown secrets are not remembered: the memo holds live callers only
        if len(memo) >= DIGEST_MEMO:
            memo.clear()
        hit = memo[secret] = (found, d)
        return hit

    def lookup(self, d: bytes) -> Identity | None:
        """The identity of a secret's digest as it stands now (a socket re-checks its key per request)."""
        found = self._keys.get(d)
        if found is None:
            return ADMIN if self.admin_digest is not None and secrets.compare_digest(d, self.admin_digest) else None
        return found if found.expires_at is None or time.time() < found.expires_at else None

    def get(self, key_id: str) -> Identity | None:
        return self._by_id.get(key_id)


__all__ = ["ADMIN", "Identity", "KeyRecord", "KeyRing", "KeySpec", "digest", "new_key_id", "new_secret",
           "parse_spec", "shown"]
