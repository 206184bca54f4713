"""The per-request hub: one place that the HTTP middleware, the fallback runner and the usage ledger's records
report to, feeding the Tekton JSON counters (rhetor.metrics), the Prometheus metrics and the access log from the
same facts, so nothing is computed twice.

- The middleware calls `begin` / `end` around every HTTP request (and `ws_open` / `ws_closed` per WebSocket).
- Every usage record (one per model request, on every front) reaches `record` (an observer of the governance
  service). Within an HTTP request it is attached to that request, and `end` writes the access line with the
  HTTP status; a record made outside one (a WebSocket frame) is logged at once.
- A model request refused before routing has no record: `end` counts and logs it from the HTTP exchange.
Knows usage records, attempts and the ASGI scope; nothing of routes' handlers or providers' wire formats.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from contextvars import Token
from typing import Any

from rhetor.governance.access import Tee
from rhetor.governance.ledger import UsageRecord, UsageSink
from rhetor.governance.meter import Meter
from rhetor.governance.prices import PriceTable
from rhetor.metrics import Metrics
from rhetor.observability.labels import MODEL_PATHS, LabelBounds, status_class
from rhetor.observability.logs import AccessLog, current_request
from rhetor.observability.metrics import PromMetrics
from rhetor.providers.simulated import TIMINGS as SIMULATED
from rhetor.routing.fallback import Attempt
from rhetor.routing.router import Target


class RequestSlot:
    __slots__ = ("overhead_ms", "record", "rid", "started", "token")

    def __init__(self, rid: str) -> None:
        self.rid = rid
        self.token: Token[Any] | None = None
        self.started = time.perf_counter()
        self.record: UsageRecord | None = None
        self.overhead_ms: float | None = None


current_slot = current_request  # the RequestSlot of the HTTP request being served, if any


class Observability:
    def __init__(self, *, metrics: bool = True, access_log: bool = True, key_label: bool = False) -> None:
        self.json = Metrics()  # the Tekton JSON view (/api/v1/metrics, /health)
        self.prom = PromMetrics(key_label=key_label) if metrics else None
        self.access = AccessLog() if access_log else None

    def attach(self, gateway: Any, prices: PriceTable) -> None:
        """Learn the label bounds from the gateway's catalogue and subscribe to its usage records: appended to
        the meter's sink (after the ledger), or a meter of our own when there is no ledger."""
        if self.prom is not None:
            self.prom.bounds = bounds_of(gateway, prices)
        if self.prom is None and self.access is None:
            return  # nothing to feed: the records cost nothing more
        meter = gateway.meter
        if meter is None:
            gateway.meter = Meter(self, prices)
        elif isinstance(meter.sink, Tee):  # one flat fan-out: no second dispatch layer per record
            meter.sink = Tee(*meter.sink.sinks, self)
        else:
            meter.sink = Fanout(meter.sink, self)

    def close(self) -> None:
        if self.prom is not None:
            self.prom.close()

    # -- HTTP middleware -------------------------------------------------------------------------------
    def begin(self, rid: str) -> RequestSlot:
        self.json.request_started()
        if self.prom is not None:
            self.prom.in_flight.inc()
        slot = RequestSlot(rid)
        slot.token = current_slot.set(slot)
        return slot

    def end(self, slot: RequestSlot, scope: MutableMapping[str, Any], code: int) -> None:
        if slot.token is not None:
            current_slot.reset(slot.token)
        self.json.request_finished(code)
        prom, rec = self.prom, slot.record
        route = scope.get("route")
        path: str = getattr(route, "path", None) or ("unmatched" if code == 404 else scope.get("path", ""))
        front = rec.front if rec is not None else MODEL_PATHS.get(path)
        if prom is not None:
            prom.in_flight.dec()
            prom.http_done(path, scope.get("method", ""), code, front, slot.overhead_ms)
            if rec is None and front is not None:
                prom.refused(front, status_class(code))
        if self.access is not None and self.access.enabled():
            state = scope.get("state") or {}
            self.access.line(rec, request_id=slot.rid, method=scope.get("method"), route=path, code=code,
                             latency_ms=(time.perf_counter() - slot.started) * 1000, overhead_ms=slot.overhead_ms,
                             front=front, key=state.get("key_id"))

    def ws_open(self) -> None:
        self.json.websockets += 1
        if self.prom is not None:
            self.prom.websockets.inc()

    def ws_closed(self) -> None:
        self.json.websockets -= 1
        if self.prom is not None:
            self.prom.websockets.dec()

    # -- UsageSink (governance observers) ------------------------------------------------------------
    def record(self, rec: UsageRecord) -> None:
        if self.prom is not None:
            self.prom.record(rec)
        slot: RequestSlot | None = current_slot.get()
        if slot is not None and slot.record is None and (rec.request_id is None or rec.request_id == slot.rid):
            slot.record = rec  # logged by `end`, with the HTTP status
        elif self.access is not None:
            self.access.line(rec, request_id=rec.request_id, method=None, route=None, code=None,
                             latency_ms=rec.latency_ms)

    # -- RunObserver (fallback runner) ---------------------------------------------------------------
    def attempt(self, attempt: Attempt) -> None:
        self.json.attempt(attempt)
        if self.prom is not None:
            self.prom.attempt(attempt)

    def fell_back(self, target: Target) -> None:
        self.json.fell_back(target)
        if self.prom is not None:
            self.prom.fell_back(target)


class Fanout:
    """One usage record, two sinks: the ledger's (first) and ours."""

    __slots__ = ("first", "second")

    def __init__(self, first: UsageSink, second: UsageSink) -> None:
        self.first, self.second = first, second

    def record(self, rec: UsageRecord) -> None:
        self.first.record(rec)
        self.second.record(rec)


def bounds_of(gateway: Any, prices: PriceTable) -> LabelBounds:
    """The task config's targets, the price table's models, the providers' defaults, the aliases' targets and
    the simulated models; the config's keys and the built-in prompts' names as components."""
    entries = gateway.config.root
    targets = [(e.provider, e.model) for e in entries.values() if e.provider]
    targets += [(t.provider, t.model) for e in entries.values() for t in (e.targets or ())]
    aliased = [tuple(m.split("/", 1)) for m in gateway.settings.model_aliases.values() if "/" in m]
    return LabelBounds.build(targets, prices.entries, gateway.defaults,
                             [*aliased, *(("simulated", m) for m in SIMULATED)], components=entries.keys())


__all__ = ["Observability", "RequestSlot", "current_slot"]
