"""The meter: turns one request's run (who asked, which front, the fallback attempts, the usage or its absence,
how it ended) into exactly one UsageRecord with its cost, and hands it to the ledger. The gateway's
non-streaming chat takes a record (`begin`) and ends it once (`answered` or `failed`); a stream gets a `Metered`,
which its session (rhetor.session) watches event by event and tells at its end (time to first token, usage,
cancelled or cut). When the upstream gives no usage the tokens are estimated and the record says so.
Costs microseconds: no I/O, no locks. Knows the normalized types and the run info; nothing of HTTP or SQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from rhetor.errors import RhetorError
from rhetor.governance.ledger import UsageRecord, UsageSink
from rhetor.governance.prices import PriceTable
from rhetor.providers.base import estimate_tokens
from rhetor.routing.fallback import RunInfo
from rhetor.types import ChatResponse, Message, Usage

ANONYMOUS = "anonymous"
_CONTENT = attrgetter("content")


def estimate_input(system: str | None, messages: list[Message]) -> int:
    """Rhetor's offline estimate of a request's input tokens (~4 characters a token + 4 per message)."""
    if not messages and not system:
        return 0
    text = (system or "") + "".join(map(_CONTENT, messages))  # in C: no generator frame per message
    return estimate_tokens(text) + 4 * len(messages)


def status_of(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    return exc.type if isinstance(exc, RhetorError) else "internal_error"


class Meter:
    def __init__(self, sink: UsageSink, prices: PriceTable) -> None:
        self.sink = sink
        self.prices = prices

    def start(self, front: str, request_id: str | None, key_id: str | None, component: str | None,
              task_type: str | None, context_id: str | None, info: RunInfo, started: float,
              estimate: Callable[[], int], provider: str | None = None, model: str | None = None) -> Metered:
        """Positional (once per request: building the keywords' dict cost ~5k instructions, callgrind). `provider`
        and `model`: what was asked for, until the run says who answered. A stream's: its session tells it."""
        rec = self.begin(front, request_id, key_id, component, task_type, context_id, started, provider, model)
        return Metered(self, rec, info, started, estimate)

    def begin(self, front: str, request_id: str | None, key_id: str | None, component: str | None,
              task_type: str | None, context_id: str | None, started: float, provider: str | None = None,
              model: str | None = None) -> UsageRecord:
        """The record of a request starting, for a caller that ends it itself with `answered` or `failed` (the
        gateway's non-streaming chat: no Metered, ~3k instructions a request, benchmarks/instructions.py)."""
        # UsageRecord's first eight fields positionally too; `context_id` set apart when there is one (a keyword
        # argument costs the call ~1k instructions)
        rec = UsageRecord(time.time() - (time.perf_counter() - started), request_id, key_id or ANONYMOUS, component,
                          task_type, front, provider, model)
        if context_id is not None:
            rec.context_id = context_id
        return rec

    def answered(self, rec: UsageRecord, info: RunInfo, started: float, response: ChatResponse,
                 estimate: Callable[[], int]) -> None:
        """`Metered.answered` for a record from `begin` (called once, or `failed` instead)."""
        usage = response.usage
        if usage.input_tokens == 0 and usage.output_tokens == 0:
            rec.estimated = True
            usage = Usage(estimate(), _output_estimate(response))
        _end(self, rec, info, started, "ok", usage)

    def failed(self, rec: UsageRecord, info: RunInfo, started: float, exc: BaseException) -> None:
        """`Metered.failed` for a record from `begin`."""
        _end(self, rec, info, started, status_of(exc), Usage())

    def direct(self, *, front: str, request_id: str | None, key_id: str | None, component: str | None,
               task_type: str | None, provider: str, model: str, started: float, usage: Usage | None,
               error: BaseException | None = None) -> None:
        """A call that does not go through the fallback runner (embeddings): price it and record it."""
        elapsed = time.perf_counter() - started
        status = "ok" if error is None else status_of(error)
        rec = UsageRecord(ts=time.time() - elapsed, request_id=request_id, key_id=key_id or ANONYMOUS,
                          component=component, task_type=task_type, front=front, provider=provider, model=model,
                          attempts=[{"provider": provider, "model": model,
                                     "outcome": "ok" if error is None else "error"}],
                          latency_ms=round(elapsed * 1000, 3), status=status)
        _price(self.prices, rec, usage or Usage())
        self.sink.record(rec)


def _price(prices: PriceTable, rec: UsageRecord, usage: Usage) -> None:
    rec.input_tokens, rec.output_tokens = usage.input_tokens, usage.output_tokens
    rec.cached_tokens, rec.cache_write_tokens = usage.cached_input_tokens, usage.cache_write_tokens
    rec.reasoning_tokens = usage.reasoning_tokens
    if rec.provider is not None and rec.model is not None:
        usd = prices.usd(rec.provider, rec.model, usage)
        if usd is None:
            rec.unpriced = True  # (cost_usd stays 0.0)
        else:
            rec.cost_usd = usd


def _ms(seconds: float) -> float:
    """`round(seconds * 1000, 3)` but for ties and the last bit: round() with digits goes through a decimal
    string (~2k instructions, callgrind); latencies are never negative."""
    return int(seconds * 1e6 + 0.5) / 1000


class Metered:
    """One request in flight. `answered` / `failed` / `streamed`: whichever comes first records it."""

    __slots__ = ("_done", "_estimate", "_info", "_meter", "_started", "rec")

    def __init__(self, meter: Meter | None, rec: UsageRecord | None, info: RunInfo | None, started: float,
                 estimate: Callable[[], int] | None) -> None:
        self._meter, self.rec, self._info, self._started, self._estimate = meter, rec, info, started, estimate
        self._done = meter is None

    def answered(self, response: ChatResponse) -> None:
        if self._done:
            return
        self._done = True
        assert self._meter is not None and self.rec is not None and self._info is not None \
            and self._estimate is not None
        self._meter.answered(self.rec, self._info, self._started, response, self._estimate)

    def failed(self, exc: BaseException) -> None:
        self._end(status_of(exc), Usage())

    def streamed(self, status: str, usage: Usage | None, output_chars: int, first: float | None) -> None:
        """The end of a stream, as rhetor.session.StreamSession.events saw it (no generator of the meter's own
        around the events): how it ended ("ok", "cancelled" or an error type), the final usage (estimated from
        `output_chars`, text and tool-call arguments, when absent) and when the first token came (perf_counter)."""
        if self._done:
            return
        assert self.rec is not None
        if first is not None and self.rec.ttft_ms is None:
            self.rec.ttft_ms = _ms(first - self._started)
        if usage is None or (usage.input_tokens == 0 and usage.output_tokens == 0):
            usage = self._estimated(output_chars)
        self._done = True  # `_end`, inline: one call fewer a stream
        assert self._meter is not None and self._info is not None
        _end(self._meter, self.rec, self._info, self._started, status, usage)

    def _estimated(self, output_chars: int) -> Usage:
        assert self.rec is not None and self._estimate is not None
        self.rec.estimated = True
        return Usage(self._estimate(), (output_chars + 3) // 4 if output_chars else 0)

    def _end(self, status: str, usage: Usage) -> None:
        if self._done:
            return
        self._done = True
        meter, rec, info = self._meter, self.rec, self._info
        assert meter is not None and rec is not None and info is not None
        _end(meter, rec, info, self._started, status, usage)


def _output_estimate(response: ChatResponse) -> int:
    """Output tokens estimated from the answer's text and tool-call arguments (~4 characters a token)."""
    chars = len(response.content) + sum(len(c.arguments) for c in response.tool_calls)
    return (chars + 3) // 4 if chars else 0


def _end(meter: Meter, rec: UsageRecord, info: RunInfo, started: float, status: str, usage: Usage) -> None:
    """Complete `rec` (how it ended, its latency, attempts, who answered, its cost) and hand it to the sink."""
    rec.status = status
    rec.latency_ms = _ms(time.perf_counter() - started)
    rec.fallback = info.fallback
    attempts = info.attempts
    rec.attempts = _one(attempts[0]) if len(attempts) == 1 else [_attempt(a) for a in attempts]
    target = info.target
    if target is not None:
        rec.provider, rec.model = target.provider, target.model
    elif info.attempts:
        rec.provider, rec.model = info.attempts[-1].provider, info.attempts[-1].model
    if rec.cache_hit:  # served from the response cache: nothing spent, the list price of the answer saved
        rec.saved_usd = meter.prices.cost(rec.provider or "", rec.model or "", usage).usd
        usage = Usage()
    _price(meter.prices, rec, usage)
    meter.sink.record(rec)


def _attempt(a: Any) -> dict[str, Any]:
    d = {"provider": a.provider, "model": a.model, "outcome": a.outcome}
    if getattr(a, "deployment", None):  # the deployment of the providers file that was tried (or answered)
        d["deployment"] = a.deployment
    if a.error_type:
        d["error_type"] = a.error_type
    return d


# One attempt (the usual run) -> its records' `attempts` list, made once and shared by every record of the same
# attempt: building the dict per request (a list comprehension and a call) cost ~2k instructions (callgrind).
# Records are never changed once written (the ledger stores them as JSON; `as_dict` copies), so sharing is safe.
_ONE: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
_ONE_MAX = 1024


def _one(a: Any) -> list[dict[str, Any]]:
    key = (a.provider, a.model, a.outcome, a.deployment, a.error_type)
    found = _ONE.get(key)
    if found is None:
        if len(_ONE) >= _ONE_MAX:
            _ONE.clear()
        found = _ONE[key] = [_attempt(a)]
    return found


NO_METER = Metered(None, None, None, 0.0, None)  # what the gateway uses when no ledger is configured

__all__ = ["ANONYMOUS", "NO_METER", "Meter", "Metered", "estimate_input", "status_of"]
