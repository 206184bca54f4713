"""A per-(provider, model) circuit breaker: stop calling a failing target, probe it again after a cooldown.

    closed ──(threshold consecutive failures, or ──► open ──(cooldown elapsed)──► half_open
      ▲       failure rate over the window)            ▲                              │
      └───────────── success (of the trial) ───────────┼──────── failure ─────────────┘
                                                       (re-opens, cooldown restarts)

Two ways to open: `threshold` consecutive failures, or — over a sliding window of `window_s` seconds
(ten buckets) holding at least `min_calls` outcomes — a share of failures of at least `failure_rate`.
Calls in flight count too: once a target has failed and has not succeeded since, each call in flight is
a probable failure, so new calls are let through only while failures + calls in flight < threshold (one
success clears this). So a dead target sees about as many calls as were in flight when it died, not every
retry of every one of them. The runner brackets each call with `acquire`/`release`.

In half_open exactly one trial call is let through at a time. If that trial never reports back (cancelled,
or a non-retryable failure the runner does not record), another trial is allowed after a further cooldown,
so a lost report cannot wedge a target shut. Only the fallback runner records outcomes, and only
retryable failures count. No I/O, no locks: it lives on the single event-loop thread. Knows nothing of
providers beyond the names in its keys.

Shared across replicas (rhetor.storage.redis_breakers): `on_open` / `on_close` hear this process's own
transitions (to publish them), and `force_open` / `force_close` apply another replica's without calling them
back — so the hot path reads only this local mirror.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Key = tuple[str, str]  # (provider, model)
State = Literal["closed", "open", "half_open"]
BUCKETS = 10
MAX_IDLE_CIRCUITS = 256  # past this many tracked keys, idle closed circuits are dropped


class _Window:
    """Outcome counts over the last `span_s` seconds, in BUCKETS fixed buckets (memory does not grow)."""

    __slots__ = ("_slots", "_width")

    def __init__(self, span_s: float) -> None:
        self._width = span_s / BUCKETS
        self._slots = [[-1, 0, 0] for _ in range(BUCKETS)]  # [bucket index, calls, failures]

    def add(self, now: float, failed: bool) -> None:
        index = int(now / self._width)
        slot = self._slots[index % BUCKETS]
        if slot[0] != index:
            slot[0], slot[1], slot[2] = index, 0, 0
        slot[1] += 1
        slot[2] += failed

    def counts(self, now: float) -> tuple[int, int]:
        """(calls, failures) in the window ending now."""
        index = int(now / self._width)
        live = [s for s in self._slots if index - BUCKETS < s[0] <= index]
        return sum(s[1] for s in live), sum(s[2] for s in live)

    def clear(self) -> None:
        for slot in self._slots:
            slot[0], slot[1], slot[2] = -1, 0, 0


@dataclass(slots=True)
class _Circuit:
    window: _Window
    failures: int = 0  # consecutive
    opened_at: float | None = None  # clock() when it last opened; None while closed
    trial_at: float | None = None  # clock() when the half-open trial was let through
    in_flight: int = 0
    opened_by: str | None = field(default=None)  # "consecutive" | "rate", for the snapshot


class CircuitBreaker:
    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic, *,
        window_s: float = 10.0, failure_rate: float = 0.5, min_calls: int = 20,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        if not 0 < failure_rate <= 1:
            raise ValueError("failure_rate must be in (0, 1]")
        if min_calls < 1:
            raise ValueError("min_calls must be >= 1")
        self._threshold = threshold
        self._cooldown = cooldown_s
        self._clock = clock
        self._window_s = window_s
        self._rate = failure_rate
        self._min_calls = min_calls
        self._circuits: dict[Key, _Circuit] = {}
        self.on_open: Callable[[Key, float], None] | None = None  # (key, seconds until half-open)
        self.on_close: Callable[[Key], None] | None = None

    @property
    def cooldown_s(self) -> float:
        return self._cooldown

    def _state(self, circuit: _Circuit | None, now: float) -> State:
        if circuit is None or circuit.opened_at is None:
            return "closed"
        return "half_open" if now - circuit.opened_at >= self._cooldown else "open"

    def _circuit(self, key: Key) -> _Circuit:
        circuit = self._circuits.get(key)
        if circuit is None:
            if len(self._circuits) >= MAX_IDLE_CIRCUITS:
                self._sweep()
            circuit = self._circuits[key] = _Circuit(_Window(self._window_s))
        return circuit

    def _sweep(self) -> None:
        for key in [k for k, c in self._circuits.items()
                    if c.in_flight == 0 and c.opened_at is None and c.failures == 0]:
            del self._circuits[key]

    def state(self, key: Key) -> State:
        return self._state(self._circuits.get(key), self._clock())

    def allow(self, key: Key) -> bool:
        """May a call to `key` go ahead now? In half_open, True for one trial at a time."""
        circuit = self._circuits.get(key)
        if circuit is None:
            return True
        if circuit.opened_at is None:  # closed (the usual case), read without the clock and `_state`
            return circuit.failures == 0 or circuit.failures + circuit.in_flight < self._threshold
        now = self._clock()
        state = self._state(circuit, now)
        if state == "closed":
            # after a failure, calls in flight count as probable failures
            return circuit.failures == 0 or circuit.failures + circuit.in_flight < self._threshold
        if state == "open":
            return False
        if circuit.trial_at is not None and now - circuit.trial_at < max(self._cooldown, 1e-9):
            return False  # a trial is in flight
        circuit.trial_at = now
        return True

    def acquire(self, key: Key) -> None:
        """A call to `key` starts (pair with `release` in a finally)."""
        self._circuit(key).in_flight += 1

    def release(self, key: Key) -> None:
        circuit = self._circuits.get(key)
        if circuit is not None and circuit.in_flight > 0:
            circuit.in_flight -= 1

    def record_success(self, key: Key) -> None:
        """Closes a half-open circuit (fresh window); while open, a call that started earlier changes nothing."""
        circuit = self._circuits.get(key)  # acquire() made it; closed (the usual case): count it, reset the run
        now = self._clock()
        if circuit is not None and circuit.opened_at is None:  # (trial_at and opened_by are None while closed)
            circuit.window.add(now, False)
            circuit.failures = 0
            return
        circuit = self._circuit(key)
        state = self._state(circuit, now)
        if state == "open":
            circuit.window.add(now, False)
            return
        if state == "half_open":
            circuit.window.clear()  # a fresh start: the failures that opened it are history
        circuit.window.add(now, False)
        was_open = circuit.opened_at is not None
        circuit.failures, circuit.opened_at, circuit.trial_at, circuit.opened_by = 0, None, None, None
        if was_open and self.on_close is not None:
            self.on_close(key)

    def record_failure(self, key: Key) -> None:
        """One more (retryable) failure; opens at the threshold or the rate, re-opens from half_open."""
        circuit = self._circuit(key)
        now = self._clock()
        circuit.failures += 1
        circuit.window.add(now, True)
        state = self._state(circuit, now)
        if state == "half_open":
            circuit.opened_at, circuit.trial_at = now, None
        elif state == "closed":
            calls, failed = circuit.window.counts(now)
            if circuit.failures >= self._threshold:
                circuit.opened_at, circuit.trial_at, circuit.opened_by = now, None, "consecutive"
            elif calls >= self._min_calls and failed >= self._rate * calls:
                circuit.opened_at, circuit.trial_at, circuit.opened_by = now, None, "rate"
            else:
                return
        else:
            return  # already open (a call that started before it opened): keep the cooldown running as it is
        if self.on_open is not None:
            self.on_open(key, self._cooldown)

    def force_open(self, key: Key, seconds: float) -> None:
        """Another replica opened `key`: open it here too, half-open after `seconds` (no on_open call)."""
        circuit = self._circuit(key)
        now = self._clock()
        opened_at = now - max(0.0, self._cooldown - seconds)
        if circuit.opened_at is None or opened_at > circuit.opened_at:
            circuit.opened_at, circuit.trial_at, circuit.opened_by = opened_at, None, "replica"
            circuit.failures = max(circuit.failures, self._threshold)

    def force_close(self, key: Key) -> None:
        """Another replica's trial call succeeded: close `key` here too (no on_close call)."""
        circuit = self._circuits.get(key)
        if circuit is not None and circuit.opened_at is not None:
            circuit.window.clear()
            circuit.failures, circuit.opened_at, circuit.trial_at, circuit.opened_by = 0, None, None, None

    def reset(self) -> None:
        self._circuits.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Targets that failed lately, as "provider/model" -> state, counts, opened_at (seconds ago)."""
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for (provider, model), c in self._circuits.items():
            calls, failed = c.window.counts(now)
            if not (c.failures or failed or c.opened_at is not None):
                continue
            out[f"{provider}/{model}"] = {
                "state": self._state(c, now),
                "consecutive_failures": c.failures,
                "opened_at": None if c.opened_at is None else round(now - c.opened_at, 3),
                "opened_by": c.opened_by,
                "in_flight": c.in_flight,
                "window_calls": calls,
                "window_failures": failed,
            }
        return out


__all__ = ["CircuitBreaker", "Key", "State"]
