"""Per-request accounting of time spent waiting on upstreams, so the web layer can report the time spent in
Rhetor itself (`x-rhetor-overhead-ms` = wall time - upstream wait).

A ContextVar holds a mutable accumulator that the web layer installs per request and the fallback runner adds
to. Knows nothing of HTTP or providers.
"""

from __future__ import annotations

import time
from contextvars import ContextVar


class UpstreamClock:
    __slots__ = ("request_id", "started", "waited")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.waited = 0.0
        self.request_id: str | None = None  # forwarded upstream as x-request-id (rhetor.providers.http)

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.waited) * 1000)


current_clock: ContextVar[UpstreamClock | None] = ContextVar("rhetor_upstream_clock", default=None)


def add_upstream_wait(seconds: float) -> None:
    clock = current_clock.get()
    if clock is not None:
        clock.waited += seconds


__all__ = ["UpstreamClock", "add_upstream_wait", "current_clock"]
