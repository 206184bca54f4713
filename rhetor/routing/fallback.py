"""The fallback runner: walks a route's targets in order, retrying each with backoff, and returns the first
success. Knows providers only through the Provider protocol and errors only through `retryable`.

Rules (house rules 3 and 4):
- an unavailable provider (no key, unreachable) or an open breaker is skipped at once;
- retryable failures are retried with exponential backoff and jitter, honouring Retry-After up to a cap;
- but when the wait a target asks for (Retry-After or backoff) exceeds `max_retry_wait_s` and a later
  target could serve, the runner moves on at once instead of sleeping it out;
- a Retry-After is remembered per (provider, model) (rhetor.routing.cooldown): until it passes, following
  requests skip that target when a later one could serve (the last candidate is still tried);
- every retry asks the breaker again, and every call is counted in flight while it runs;
- a non-retryable failure (400/401/403/404/422) is not retried; the next target is tried;
- an `InvalidRequestError` (the caller's fault, e.g. an unknown simulated model) stops the run at once;
- streams commit at the first event: before it, failures fall back; after it, a failure becomes one
  terminal `StreamError` and the stream ends.
With a providers file, the `balancer` (rhetor.routing.balance) first turns each provider-level target into the
deployments serving it, in its strategy's order; breakers and cool-downs then count per deployment/model
(`Target.key`), and each attempt is reported to it (calls in flight, time to the first event).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from rhetor.errors import (
    AllTargetsFailedError,
    CircuitOpenError,
    CoolingDownError,
    InvalidRequestError,
    ProviderError,
    ProviderUnavailableError,
    RhetorError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from rhetor.observability import genai, tracing
from rhetor.providers import Providers
from rhetor.providers.base import Provider
from rhetor.routing.balance import Balancer
from rhetor.routing.breaker import CircuitBreaker
from rhetor.routing.cooldown import Cooldowns
from rhetor.routing.router import Route, Target
from rhetor.timing import add_upstream_wait
from rhetor.types import ChatRequest, ChatResponse, ProviderEvent, StreamError, StreamEvent

T = TypeVar("T")
A = TypeVar("A")
RequestBuilder = Callable[[Target, Provider], ChatRequest]


class RunObserver(Protocol):
    """Optional metrics hook (rhetor.metrics.Metrics): told of every finished attempt and every fallback."""

    def attempt(self, attempt: Attempt) -> None: ...

    def fell_back(self, target: Target) -> None: ...


@dataclass(slots=True)
class Attempt:
    provider: str
    model: str
    outcome: str  # "ok" | "error" | "skipped"
    error_type: str | None = None
    message: str | None = None
    status: int | None = None
    elapsed_ms: float = 0.0
    deployment: str | None = None  # the deployment tried, when a providers file is configured

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"provider": self.provider, "model": self.model, "outcome": self.outcome,
                             "elapsed_ms": round(self.elapsed_ms, 2)}
        if self.deployment is not None:
            d["deployment"] = self.deployment
        if self.error_type:
            d["error_type"] = self.error_type
            d["message"] = self.message
        if self.status is not None:
            d["status"] = self.status
        return d


@dataclass(slots=True)
class RunInfo:
    """Who answered and how we got there; filled as the run proceeds."""

    attempts: list[Attempt] = field(default_factory=list)
    target: Target | None = None
    fallback: bool = False

    def attempts_dicts(self) -> list[dict[str, Any]]:
        return [a.as_dict() for a in self.attempts]


class FallbackRunner:
    def __init__(self, providers: Providers, breaker: CircuitBreaker, *, max_retry_after_s: float = 60.0,
                 backoff_base_s: float = 0.5, max_retry_wait_s: float = 2.0,
                 cooldowns: Cooldowns | None = None) -> None:
        self._providers = providers
        self._breaker = breaker
        self._max_retry_after = max_retry_after_s
        self._max_wait = max_retry_wait_s
        self._backoff_base = backoff_base_s
        self.cooldowns = cooldowns if cooldowns is not None else Cooldowns()
        self.observer: RunObserver | None = None
        self.balancer: Balancer | None = None  # set by the gateway when a providers file names deployments

    def _wait(self, exc: ProviderError, retry_number: int) -> float:
        """Seconds before retry `retry_number` (1-based): Retry-After up to the cap, else full-jitter backoff."""
        if isinstance(exc, UpstreamStatusError) and exc.retry_after is not None:
            return min(exc.retry_after, self._max_retry_after)
        return random.uniform(0, min(10.0, self._backoff_base * 2 ** retry_number))

    async def _has_alternative(self, route: Route, index: int) -> bool:
        """Could a target after `index` serve now (available, breaker not open, not cooling down)?"""
        for t in route.targets[index + 1:]:
            key = t.key
            if self._breaker.state(key) == "open" or self.cooldowns.remaining(key) > 0:
                continue
            if (await self._providers.get(key[0]).available()).ok:
                return True
        return False

    def _try(self, target: Target, info: RunInfo, call: Callable[[A], Awaitable[T]], arg: A,
             retry: int) -> Awaitable[T]:
        """One attempt; with tracing on, inside its `chat {model}` CLIENT span. A plain function returning the
        attempt's coroutine, so tracing off costs no coroutine layer of its own."""
        if tracing.active() is None:
            return self._attempt(target, info, call, arg)
        return self._traced(target, info, call, arg, retry)

    async def _traced(self, target: Target, info: RunInfo, call: Callable[[A], Awaitable[T]], arg: A,
                      retry: int) -> T:
        with tracing.span(f"chat {target.model}", kind="client") as span:
            if span is not None:
                span.set_attributes({**genai.target_attrs(*target.key), "rhetor.attempt.retry": retry})
            result = await self._attempt(target, info, call, arg)
            if span is not None and isinstance(result, ChatResponse):
                span.set_attributes(genai.response_attrs(result))
            return result

    async def _attempt(self, target: Target, info: RunInfo, call: Callable[[A], Awaitable[T]], arg: A) -> T:
        """`call(arg)` counted in flight, timed, reported to the breaker, the balancer and the observer."""
        key = target.key
        balancer = self.balancer
        started = time.perf_counter()
        self._breaker.acquire(key)
        if balancer is not None:
            balancer.started(key[0])
        try:
            result = await call(arg)
        except ProviderError as exc:
            elapsed = time.perf_counter() - started
            add_upstream_wait(elapsed)
            info.attempts.append(_failed(target, exc, elapsed))
            if self.observer is not None:
                self.observer.attempt(info.attempts[-1])
            if exc.retryable:
                self._breaker.record_failure(key)
            raise
        finally:
            self._breaker.release(key)
            if balancer is not None:
                balancer.finished(key[0])
        elapsed = time.perf_counter() - started
        add_upstream_wait(elapsed)
        if balancer is not None:
            balancer.measured(key[0], elapsed)
        info.attempts.append(Attempt(target.provider, target.model, "ok", None, None, None, elapsed * 1000,
                                     target.deployment))
        if self.observer is not None:
            self.observer.attempt(info.attempts[-1])
        self._breaker.record_success(key)
        return result

    async def _retried(self, route: Route, index: int, info: RunInfo, call: Callable[[A], Awaitable[T]], arg: A,
                       exc: ProviderError) -> T:
        """The retries after a failed first attempt (`exc`), while they are allowed; raises the last failure.
        (A target's first attempt is `_try(..., 0)`, run by `complete`/`open_stream` themselves.)"""
        target = route.targets[index]
        key = target.key
        retry = 0
        while True:
            if not exc.retryable:
                raise exc
            asked = exc.retry_after if isinstance(exc, UpstreamStatusError) else None
            if asked:
                self.cooldowns.note(key, min(asked, self._max_retry_after))
            if retry >= target.retries:
                raise exc
            retry += 1
            wait = self._wait(exc, retry)
            if wait > self._max_wait and await self._has_alternative(route, index):
                raise self._skip(target, info, CoolingDownError(
                    f"asked to wait {wait:g}s, over the {self._max_wait:g}s budget: moved on",
                    provider=target.provider, model=target.model)) from exc
            await asyncio.sleep(wait)
            if not self._breaker.allow(key):
                raise self._skip(target, info, CircuitOpenError(
                    "circuit open: retry not attempted", provider=target.provider, model=target.model)) from exc
            try:
                return await self._try(target, info, call, arg, retry)
            except ProviderError as failure:
                exc = failure

    def _skip(self, target: Target, info: RunInfo, skip: ProviderError) -> ProviderError:
        info.attempts.append(Attempt(target.provider, target.model, "skipped", skip.type, skip.message,
                                     deployment=target.deployment))
        tracing.event("rhetor.target_skipped", {"gen_ai.request.model": target.model, "error.type": skip.type,
                                                **genai.system_attrs(target.provider)})
        return skip

    async def _eligible(self, route: Route, index: int, info: RunInfo) -> Provider | None:
        target = route.targets[index]
        key = target.key
        provider = self._providers.get(key[0])
        availability = await provider.available()
        skip: ProviderError | None = None
        if not availability.ok:
            skip = ProviderUnavailableError(availability.reason, provider=target.provider, model=target.model)
        elif (left := self.cooldowns.remaining(key)) > 0 and await self._has_alternative(route, index):
            skip = CoolingDownError(f"upstream asked for quiet (Retry-After): {left:.1f}s left",
                                    provider=target.provider, model=target.model)
        elif not self._breaker.allow(key):
            skip = CircuitOpenError("circuit open after repeated failures", provider=target.provider,
                                    model=target.model)
        if skip is not None:
            self._skip(target, info, skip)
            return None
        return provider

    def _exhausted(self, route: Route, info: RunInfo) -> AllTargetsFailedError:
        chain = " -> ".join(f"{t.provider}/{t.model}" for t in route.targets)
        return AllTargetsFailedError(f"all targets failed ({chain})", info.attempts_dicts())

    async def complete(self, route: Route, build: RequestBuilder, info: RunInfo) -> ChatResponse:
        if self.balancer is not None:
            route = self.balancer.expand(route)
        for index, target in enumerate(route.targets):
            provider = await self._eligible(route, index, info)
            if provider is None:
                continue
            request = build(target, provider)
            try:  # `_run` inline: one coroutine fewer per request
                try:
                    response = await self._try(target, info, provider.complete, request, 0)
                except ProviderError as exc:
                    response = await self._retried(route, index, info, provider.complete, request, exc)
            except ProviderError:
                continue
            info.target, info.fallback = target, index > 0
            if index and self.observer is not None:
                self.observer.fell_back(target)
            return response
        raise self._exhausted(route, info)

    async def open_stream(self, route: Route, build: RequestBuilder, info: RunInfo
                          ) -> AsyncIterator[StreamEvent]:
        """Open the first target that yields an event; return an iterator that starts with that event.

        Raises AllTargetsFailedError (or InvalidRequestError) before anything is committed to the caller.
        """
        if self.balancer is not None:
            route = self.balancer.expand(route)
        for index, target in enumerate(route.targets):
            provider = await self._eligible(route, index, info)
            if provider is None:
                continue
            request = build(target, provider)
            holder: list[AsyncIterator[ProviderEvent]] = []

            async def first_event(r: ChatRequest, p: Provider = provider,
                                  h: list[AsyncIterator[ProviderEvent]] = holder) -> ProviderEvent:
                gen = p.stream(r)
                h[:] = [gen]
                try:
                    return await anext(gen)
                except StopAsyncIteration:
                    raise UpstreamProtocolError("stream ended before any event", provider=p.name,
                                                model=r.model) from None
                except BaseException:
                    await _aclose(gen)
                    raise

            try:  # `_run` inline: one coroutine fewer per stream
                try:
                    first = await self._try(target, info, first_event, request, 0)
                except ProviderError as exc:
                    first = await self._retried(route, index, info, first_event, request, exc)
            except ProviderError:
                continue
            info.target, info.fallback = target, index > 0
            if index and self.observer is not None:
                self.observer.fell_back(target)
            return _committed(first, holder[0], target, info, self.balancer)
        raise self._exhausted(route, info)


async def _committed(first: ProviderEvent, gen: AsyncIterator[ProviderEvent], target: Target,
                     info: RunInfo, balancer: Balancer | None = None) -> AsyncIterator[StreamEvent]:
    """The stream after commit: never falls back; a failure becomes one StreamError, then the end. An open
    stream counts as in flight for the balancer until it ends."""
    if balancer is not None:
        balancer.started(target.key[0])
    try:
        yield first
        async for event in gen:
            yield event
    except RhetorError as exc:
        info.attempts.append(_failed(target, exc, 0.0))
        yield StreamError(exc.message, exc.type, exc.retryable)
    finally:
        if balancer is not None:
            balancer.finished(target.key[0])
        await _aclose(gen)


async def _aclose(gen: AsyncIterator[Any]) -> None:
    close = getattr(gen, "aclose", None)
    if close is not None:
        await close()


def _failed(target: Target, exc: RhetorError, elapsed: float) -> Attempt:
    status = exc.upstream_status if isinstance(exc, UpstreamStatusError) else None
    return Attempt(target.provider, target.model, "error", exc.type, exc.message, status, elapsed * 1000,
                   target.deployment)


__all__ = ["Attempt", "FallbackRunner", "InvalidRequestError", "RequestBuilder", "RunInfo", "RunObserver"]
