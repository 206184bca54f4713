"""A deployment from the providers file, live: one provider instance per key of its key pool, rotation to the
next key on 401/429 from one (that key cools down for its Retry-After), and `max_concurrency` calls at once
(a call waits up to `queue_s` for a slot, then raises DeploymentBusyError so the runner tries the next one).

`build` turns a DeploymentSpec into this, creating each member from a copy of Settings that carries the
deployment's base URL, key and timeout, so provider modules stay as they are (one module, one registry line).
Keys live only inside the member providers: messages here name a key by its position ("key 2 of 3").
Knows nothing of routing, balancing strategies, breakers or HTTP framing toward callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import SecretStr

from rhetor.errors import CoolingDownError, DeploymentBusyError, ProviderUnavailableError, UpstreamStatusError
from rhetor.providers.base import Availability, Provider
from rhetor.providers.deployments import DeploymentSpec
from rhetor.providers.http import HttpUpstream
from rhetor.providers.listing import Listing, listing_of
from rhetor.settings import Settings
from rhetor.types import ChatRequest, ChatResponse, ProviderEvent

ROTATE_ON = frozenset({401, 403, 429})
BAD_KEY_COOLDOWN_S = 60.0  # a key refused with 401/403 rests this long (it may have been revoked)
RATE_COOLDOWN_S = 1.0  # a 429 without Retry-After


def _settings_for(settings: Settings, spec: DeploymentSpec, key: str | None) -> Settings:
    secret = SecretStr(key) if key else None  # model_copy does not validate: the field's own type
    update: dict[str, Any] = {}
    if spec.timeout_s is not None:
        update["upstream_timeout_s"] = spec.timeout_s
    if spec.kind == "openai":
        update.update(openai_api_key=secret, **({"openai_base_url": spec.base_url} if spec.base_url else {}))
    elif spec.kind == "anthropic":
        update.update(anthropic_api_key=secret, **({"anthropic_base_url": spec.base_url} if spec.base_url else {}))
    elif spec.kind == "gemini":
        update.update(gemini_api_key=secret, **({"gemini_base_url": spec.base_url} if spec.base_url else {}))
    elif spec.kind == "ollama" and spec.base_url:
        update["ollama_host"] = spec.base_url.removesuffix("/v1")
    return settings.model_copy(update=update)


def _member(settings: Settings, spec: DeploymentSpec, key: str | None, load: Callable[[str, Settings], Provider]
            ) -> Provider:
    copy = _settings_for(settings, spec, key)
    if spec.preset is not None:
        from rhetor.providers.compatible import CompatibleProvider

        provider: Provider = CompatibleProvider(copy, spec.preset, label=spec.name)
    else:
        provider = load(spec.kind, copy)
    http = getattr(provider, "_http", None)
    if isinstance(http, HttpUpstream):
        http._headers.update(spec.headers)  # extra headers (OpenRouter's referer, a gateway's own) on every call
        if spec.kind == "ollama" and key:
            http._headers["authorization"] = f"Bearer {key}"
    return provider


class Deployment:
    """A Provider (same protocol) fanning out over its key pool, bounded by max_concurrency."""

    def __init__(self, spec: DeploymentSpec, members: list[Provider], clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.spec = spec
        self.deployment = spec.name
        self.name = members[0].name
        self.default_model = members[0].default_model
        self._members = members
        self._keyed = bool(spec.keys)
        self._clock = clock
        self._rest: list[float] = [0.0] * len(members)  # per key: monotonic time its cool-down ends
        self._next = 0
        self._slots = asyncio.Semaphore(spec.max_concurrency) if spec.max_concurrency else None
        self.rotations = 0  # keys rotated away from (tests and /providers read it)

    def __getattr__(self, attr: str) -> Any:
        # optional capabilities (count_tokens, embed, wire) are the first member's: runtime_checkable sees them
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._members[0], attr)

    # -- keys -------------------------------------------------------------------------------------------
    def _order(self) -> list[int]:
        n, now = len(self._members), self._clock()
        start, self._next = self._next, (self._next + 1) % n
        ring = [(start + i) % n for i in range(n)]
        return [i for i in ring if self._rest[i] <= now]

    def _rotate(self, index: int, exc: UpstreamStatusError) -> None:
        wait = exc.retry_after if exc.retry_after else (
            RATE_COOLDOWN_S if exc.upstream_status == 429 else BAD_KEY_COOLDOWN_S)
        self._rest[index] = max(self._rest[index], self._clock() + wait)
        self.rotations += 1

    def _cooling(self, model: str) -> CoolingDownError:
        left = min(self._rest) - self._clock()
        return CoolingDownError(f"{self.spec.name}: all {len(self._members)} keys cooling down ({left:.1f}s left)",
                                provider=self.name, model=model)

    def keys_state(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [{"key": f"key {i + 1} of {len(self._members)}", "cooling_s": round(max(0.0, r - now), 3)}
                for i, r in enumerate(self._rest)] if self._keyed else []

    # -- slots ------------------------------------------------------------------------------------------
    async def _acquire(self, model: str) -> None:
        if self._slots is None:
            return
        try:
            await asyncio.wait_for(self._slots.acquire(), self.spec.queue_s)
        except TimeoutError:
            raise DeploymentBusyError(f"{self.spec.name}: {self.spec.max_concurrency} calls in flight "
                                      f"(max_concurrency) for {self.spec.queue_s:g}s", provider=self.name,
                                      model=model) from None

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    # -- the protocol -----------------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self._acquire(request.model)
        try:
            order = self._order()
            for n, i in enumerate(order):
                try:
                    return await self._members[i].complete(request)
                except UpstreamStatusError as exc:
                    if exc.upstream_status not in ROTATE_ON or not self._keyed or n == len(order) - 1:
                        if exc.upstream_status in ROTATE_ON and self._keyed:
                            self._rotate(i, exc)
                        raise
                    self._rotate(i, exc)
            raise self._cooling(request.model)
        finally:
            self._release()

    async def stream(self, request: ChatRequest) -> AsyncIterator[ProviderEvent]:
        await self._acquire(request.model)
        try:
            order = self._order()
            for n, i in enumerate(order):
                gen = self._members[i].stream(request)
                try:
                    first = await anext(gen)
                except UpstreamStatusError as exc:
                    await _aclose(gen)
                    if exc.upstream_status in ROTATE_ON and self._keyed:
                        self._rotate(i, exc)
                        if n < len(order) - 1:
                            continue
                    raise
                except BaseException:
                    await _aclose(gen)
                    raise
                try:
                    yield first
                    async for event in gen:
                        yield event
                finally:
                    await _aclose(gen)
                return
            raise self._cooling(request.model)
        finally:
            self._release()

    async def models(self) -> list[str]:
        if self.spec.models:
            return list(self.spec.models)
        return await self._members[0].models()

    async def listed_models(self) -> Listing:
        """The models the providers file names, else what the first member lists (live where it can)."""
        if self.spec.models:
            return Listing(tuple(self.spec.models), "configured")
        return await listing_of(self._members[0])

    async def available(self) -> Availability:
        if not self._keyed and self.spec.preset is None and self.spec.kind in ("openai", "anthropic", "gemini"):
            return Availability(False, f"{self.spec.name}: no api_key, api_keys or api_key_env")
        if self._keyed and all(r > self._clock() for r in self._rest):
            return Availability(False, self._cooling("").message)
        a = await self._members[0].available()
        return Availability(a.ok, f"{self.spec.name} ({self.spec.kind}"
                                  f"{', ' + self.spec.preset.name if self.spec.preset else ''}): {a.reason}")

    def context_window(self, model: str) -> int:
        return self._members[0].context_window(model)

    async def aclose(self) -> None:
        for member in self._members:
            await member.aclose()


def build(spec: DeploymentSpec, settings: Settings, load: Callable[[str, Settings], Provider]) -> Deployment:
    keys: list[str | None] = [k.get_secret_value() for k in spec.keys] or [None]
    return Deployment(spec, [_member(settings, spec, key, load) for key in keys])


async def _aclose(gen: AsyncIterator[Any]) -> None:
    close = getattr(gen, "aclose", None)
    if close is not None:
        await close()


__all__ = ["Deployment", "ProviderUnavailableError", "build"]
