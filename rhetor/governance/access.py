"""The access gate: caller keys and rate limits assembled — the key ring (static RHETOR_API_KEYS, RHETOR_ADMIN_KEY
and the virtual keys of the key store), the key store's admin operations, and the rate limiter with its per-key
and per-component limits. The web layer asks it who a secret belongs to and whether one more request may start;
the usage records tell it the tokens each request really used (it is a UsageSink).

The ring is reloaded at once after each admin change here, and polled every RHETOR_KEYS_POLL_S for changes made
by other processes (`python -m rhetor keys`, other workers); with Redis, `on_change` tells the other replicas at
once (rhetor.storage.redis_shared) and they `reload`. Knows Settings and the room's parts; nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rhetor.errors import RhetorError
from rhetor.governance.keys import Identity, KeyRecord, KeyRing, KeySpec, digest, new_key_id, new_secret, shown
from rhetor.governance.keystore import KeyStore, SqliteKeyStore
from rhetor.governance.ledger import UsageRecord, UsageSink
from rhetor.governance.limits import InProcessLimiter, RateLimiter, Verdict
from rhetor.settings import Settings

log = logging.getLogger("rhetor.keys")


@dataclass(slots=True)
class Admission:
    """The outcome of `Access.admit`: the verdict to show (OpenAI's headers; the refusal if `refused_by` is
    set: the key's id or `component:<name>`) and the reservations to give back when the request ends."""

    verdict: Verdict
    held: list[tuple[str, int]]
    refused_by: str | None


class Access:
    def __init__(self, settings: Settings, store: KeyStore | None = None, limiter: RateLimiter | None = None) -> None:
        admin = settings.admin_key.get_secret_value() if settings.admin_key is not None else None
        self.ring = KeyRing(tuple(k.get_secret_value() for k in settings.api_keys), admin)
        self.store: KeyStore = store if store is not None else SqliteKeyStore(settings.keys_db_path)
        self.limiter: RateLimiter = limiter if limiter is not None else InProcessLimiter()
        # The limiter when it is in process: the web layer counts a request against its key's limits alone by
        # calling it directly — `take` (the x-ratelimit-* headers, or None when refused, counting nothing: `check`
        # then says why), then `release(key_id, tokens)` under a TPM limit — with no Verdict or Admission built
        # (~2k instructions a request, callgrind). Then `check` also answers what `admit` would, without a
        # coroutine (`answers_at_once`; attributes: read on every request).
        self.in_process: InProcessLimiter | None = self.limiter if type(self.limiter) is InProcessLimiter else None
        self.answers_at_once = self.in_process is not None
        self.component_limits = settings.component_limits
        # the UsageSink's `record`: chosen once, as the component limits are fixed for the process
        self.record: Callable[[UsageRecord], None] = self._record if self.component_limits else self._record_keys
        self.poll_s = settings.keys_poll_s
        self._generation = -1
        self._poller: asyncio.Task[None] | None = None
        self.on_change: Callable[[], None] | None = None  # after this process changed a key (publish it)

    @property
    def admin_enabled(self) -> bool:
        return self.ring.admin_digest is not None

    async def start(self) -> None:
        """Open the key store and load the ring (a store that cannot open refuses to start: keys are auth)."""
        await self.store.open()
        await self.reload()
        self._poller = asyncio.create_task(self._poll(), name="rhetor-keys-poll")

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        await self.store.close()

    async def reload(self) -> None:
        generation = await self.store.generation()
        self.ring.load(await self.store.all())
        self._generation = generation

    async def _changed(self) -> None:
        await self.reload()
        if self.on_change is not None:
            self.on_change()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                if await self.store.generation() != self._generation:
                    await self.reload()
            except RhetorError as exc:  # the last known keys stay in force; say so once per failure
                log.warning("cannot re-read the key store: %s", exc.message)

    # -- the hot path ------------------------------------------------------------------------------------
    def check(self, identity: Identity | None, component: str | None, tokens: int) -> Admission | None:
        """`admit` for the in-process limiter (answers_at_once), without a coroutine (~3k instructions a request)."""
        limiter = self.limiter
        assert isinstance(limiter, InProcessLimiter)
        limits = self.component_limits.get(component) if component and self.component_limits else None
        if limits is None:
            if identity is None or not identity.limited:
                return None
            subject = identity.key_id
            verdict = limiter.check(subject, identity.rpm, identity.tpm, tokens)
            return Admission(verdict, [(subject, verdict.reserved)], None) if verdict.allowed else \
                Admission(verdict, [], subject)
        held: list[tuple[str, int]] = []
        first: Verdict | None = None
        for subject, rpm, tpm in _checks(identity, component, limits):
            verdict = limiter.check(subject, rpm, tpm, tokens)
            if not verdict.allowed:
                self.release(Admission(verdict, held, None))  # what the earlier subjects reserved
                return Admission(verdict, [], subject)
            held.append((subject, verdict.reserved))
            first = first or verdict
        assert first is not None
        return Admission(first, held, None)

    async def admit(self, identity: Identity | None, component: str | None, tokens: int) -> Admission | None:
        """None when no limit applies; else the key's limits, then the component's (RHETOR_COMPONENT_LIMITS).
        `tokens` is the request's estimated size, reserved against TPM until `release`."""
        if type(self.limiter) is InProcessLimiter:
            return self.check(identity, component, tokens)
        limits = self.component_limits.get(component) if component and self.component_limits else None
        if limits is None:
            if identity is None or not identity.limited:
                return None
            limits_of: list[tuple[str, int | None, int | None]] = [(identity.key_id, identity.rpm, identity.tpm)]
        else:
            limits_of = _checks(identity, component, limits)
        held: list[tuple[str, int]] = []
        first: Verdict | None = None
        for subject, rpm, tpm in limits_of:
            verdict = await self.limiter.admit(subject, rpm, tpm, tokens)
            if not verdict.allowed:
                self.release(Admission(verdict, held, None))  # what the earlier subjects reserved
                return Admission(verdict, [], subject)
            held.append((subject, verdict.reserved))
            first = first or verdict
        assert first is not None
        return Admission(first, held, None)

    def release(self, admission: Admission | None) -> None:
        if admission is not None:
            held, admission.held = admission.held, []
            for subject, reserved in held:
                self.limiter.release(subject, reserved)

    def _record(self, rec: UsageRecord) -> None:
        """A finished request's real tokens count against its key's and component's TPM (UsageSink)."""
        tokens = rec.input_tokens + rec.output_tokens
        if rec.key_id in self.ring.tpm_ids:
            self.limiter.consume(rec.key_id, tokens)
        if rec.component and rec.component in self.component_limits:
            self.limiter.consume("component:" + rec.component, tokens)

    def _record_keys(self, rec: UsageRecord) -> None:
        """`_record` with no component limits configured: the key's TPM only (half the bytecodes a record)."""
        key_id = rec.key_id
        if key_id in self.ring.tpm_ids:
            self.limiter.consume(key_id, rec.input_tokens + rec.output_tokens)

    # -- admin -------------------------------------------------------------------------------------------
    async def create(self, spec: KeySpec) -> tuple[KeyRecord, str]:
        secret = new_secret()
        assert spec.name is not None
        rec = KeyRecord(id=new_key_id(), name=spec.name, digest=digest(secret.encode()), hint=shown(secret),
                        created_at=time.time(), spec=_spec(spec, {}))
        await self.store.create(rec)
        await self._changed()
        return rec, secret

    async def update(self, key_id: str, spec: KeySpec) -> KeyRecord | None:
        current = await self.store.get(key_id)
        if current is None or current.revoked_at is not None:
            return current
        rec = await self.store.update(key_id, spec.name, _spec(spec, current.spec))
        await self._changed()
        return rec

    async def revoke(self, key_id: str) -> KeyRecord | None:
        rec = await self.store.revoke(key_id)
        await self._changed()
        return rec

    async def rotate(self, key_id: str) -> tuple[KeyRecord, str] | None:
        """A new secret for the same key (same id, spec and usage); the old secret stops working at once."""
        secret = new_secret()
        rec = await self.store.rotate(key_id, digest(secret.encode()), shown(secret))
        await self._changed()
        return None if rec is None else (rec, secret)


class Tee:
    """A UsageSink that hands each record to several sinks (the ledger, then the access gate's TPM counts)."""

    record: Callable[[UsageRecord], None]  # (a UsageSink's method: a function made for the sinks, `_fanned`)

    def __init__(self, *sinks: UsageSink) -> None:
        self.sinks = sinks

    @property
    def sinks(self) -> tuple[UsageSink, ...]:
        return self._sinks

    @sinks.setter
    def sinks(self, sinks: tuple[UsageSink, ...]) -> None:
        self._sinks, self.record = sinks, _fanned(tuple(sink.record for sink in sinks))


def _fanned(records: tuple[Callable[[UsageRecord], None], ...]) -> Callable[[UsageRecord], None]:
    """One function calling each of the sinks' bound `record` methods (looked up once) in order; for the four of a
    governed gateway (the ledger, the key limits, the budgets, the metrics) without a loop over them (42 -> 26
    bytecodes a record, benchmarks/bytecodes.py)."""
    if len(records) == 4:
        a, b, c, d = records

        def four(rec: UsageRecord) -> None:
            a(rec)
            b(rec)
            c(rec)
            d(rec)
        return four

    def each(rec: UsageRecord) -> None:
        for record in records:
            record(rec)
    return each


def _checks(identity: Identity | None, component: str | None,
            limits: dict[str, int]) -> list[tuple[str, int | None, int | None]]:
    """The subjects a request is counted against when its component has limits: its key's (if limited), then the
    component's."""
    checks: list[tuple[str, int | None, int | None]] = []
    if identity is not None and identity.limited:
        checks.append((identity.key_id, identity.rpm, identity.tpm))
    checks.append(("component:" + (component or ""), limits.get("rpm"), limits.get("tpm")))
    return checks


def _spec(spec: KeySpec, current: dict[str, Any]) -> dict[str, Any]:
    """`current` with the fields `spec` sets (null clears one); the name is kept apart."""
    out = dict(current)
    for name, value in spec.model_dump(exclude_unset=True).items():
        if name == "name":
            continue
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


__all__ = ["Access", "Admission", "Tee"]
