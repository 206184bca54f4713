"""Rhetor's own counters: requests, in flight, errors, fallbacks and per-provider latency, plus a cheap
process snapshot (psutil, imported at the first snapshot: ~3% of start-up's imports). Plain in-memory numbers
updated from the event loop thread; no locks, no I/O on update, no FastAPI. The web layer bumps the request
counters; the fallback runner reports attempts through the `RunObserver` hooks (`attempt`, `fell_back`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from rhetor.routing.fallback import Attempt
from rhetor.routing.router import Target


@dataclass(slots=True)
class ProviderStats:
    calls: int = 0
    errors: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    last_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        ok = self.calls - self.errors
        return {"calls": self.calls, "errors": self.errors, "last_ms": round(self.last_ms, 2),
                "avg_ms": round(self.total_ms / self.calls, 2) if self.calls else 0.0,
                "max_ms": round(self.max_ms, 2), "ok": ok}


class Metrics:
    """Counters for one process. `attempt`/`fell_back` make it a fallback-runner observer."""

    def __init__(self) -> None:
        self.requests = 0
        self.in_flight = 0
        self.errors = 0
        self.websockets = 0
        self.fallbacks = 0
        self.providers: dict[str, ProviderStats] = {}
        self._process: Any = None  # a psutil.Process, made at the first snapshot
        # cpu_percent's starting point, as psutil's priming call would take it: the first snapshot measures since now
        self._primed = (_cpu_seconds(), time.monotonic())

    # -- request counters (web layer) ------------------------------------------------------------------
    def request_started(self) -> None:
        self.requests += 1
        self.in_flight += 1

    def request_finished(self, status: int) -> None:
        self.in_flight -= 1
        if status >= 500:
            self.errors += 1

    # -- RunObserver (fallback runner) ----------------------------------------------------------------
    def attempt(self, attempt: Attempt) -> None:
        if attempt.outcome == "skipped":
            return
        stats = self.providers.get(attempt.provider)
        if stats is None:
            stats = self.providers[attempt.provider] = ProviderStats()
        stats.calls += 1
        stats.last_ms = attempt.elapsed_ms
        stats.total_ms += attempt.elapsed_ms
        stats.max_ms = max(stats.max_ms, attempt.elapsed_ms)
        if attempt.outcome != "ok":
            stats.errors += 1

    def fell_back(self, target: Target) -> None:
        self.fallbacks += 1

    # -- snapshot ----------------------------------------------------------------------------------------
    def process(self) -> dict[str, Any]:
        """CPU since the previous call (non-blocking), resident memory, open fds and threads."""
        import psutil

        p = self._process
        try:
            if p is None:
                p = psutil.Process(os.getpid())
                p.cpu_percent(interval=None)  # primes psutil's counter: the next snapshot measures since now
                cpu, since = self._primed
                elapsed = time.monotonic() - since  # psutil's formula: CPU seconds over wall seconds, one decimal
                percent = round((_cpu_seconds() - cpu) / elapsed * 100, 1) if elapsed > 0 else 0.0
                self._process = p
            else:
                percent = p.cpu_percent(interval=None)
            with p.oneshot():
                return {"cpu_percent": percent, "rss_bytes": p.memory_info().rss,
                        "open_fds": p.num_fds() if hasattr(p, "num_fds") else None, "threads": p.num_threads()}
        except psutil.Error:  # a sandbox may hide /proc entries; metrics must never fail a health check
            return {}

    def snapshot(self) -> dict[str, Any]:
        return {**self.process(), "requests_total": self.requests, "requests_in_flight": self.in_flight,
                "errors_total": self.errors, "websockets_open": self.websockets, "fallbacks_total": self.fallbacks,
                "providers": {name: s.as_dict() for name, s in sorted(self.providers.items())}}


def _cpu_seconds() -> float:
    """This process's user + system CPU time (what psutil's cpu_percent counts; the same kernel counters)."""
    t = os.times()
    return t.user + t.system


__all__ = ["Metrics", "ProviderStats"]
