"""A per-(provider, model) circuit breaker: stop calling a failing target, probe it again after a cooldown.

    closed ──(threshold consecutive failures)──► open ──(cooldown elapsed)──► half_open
      ▲                                            ▲                              │
      └───────────── success ──────────────────────┼──────── failure ─────────────┘
                                                   (re-opens, cooldown restarts)

In half_open exactly one trial call is let through at a time. If that trial never reports back (cancelled,
or a non-retryable failure the runner does not record), another trial is allowed after a further cooldown,
so a lost report cannot wedge a target shut. Only the fallback runner records outcomes, and only
retryable failures count. No I/O, no locks: it lives on the single event-loop thread. Knows nothing of
providers beyond the names in its keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Key = tuple[str, str]  # (provider, model)
State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    opened_at: float | None = None  # clock() when it last opened; None while closed
    trial_at: float | None = None  # clock() when the half-open trial was let through


class CircuitBreaker:
    def __init__(
        self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        self._threshold = threshold
        self._cooldown = cooldown_s
        self._clock = clock
        self._circuits: dict[Key, _Circuit] = {}

    def _state(self, circuit: _Circuit | None, now: float) -> State:
        if circuit is None or circuit.opened_at is None:
            return "closed"
        return "half_open" if now - circuit.opened_at >= self._cooldown else "open"

    def state(self, key: Key) -> State:
        return self._state(self._circuits.get(key), self._clock())

    def allow(self, key: Key) -> bool:
        """May a call to `key` go ahead now? In half_open, True for one trial at a time."""
        circuit = self._circuits.get(key)
        now = self._clock()
        state = self._state(circuit, now)
        if state == "closed":
            return True
        if state == "open" or circuit is None:
            return False
        if circuit.trial_at is not None and now - circuit.trial_at < max(self._cooldown, 1e-9):
            return False  # a trial is in flight
        circuit.trial_at = now
        return True

    def record_success(self, key: Key) -> None:
        self._circuits.pop(key, None)

    def record_failure(self, key: Key) -> None:
        """One more consecutive (retryable) failure; opens at the threshold, re-opens from half_open."""
        circuit = self._circuits.setdefault(key, _Circuit())
        now = self._clock()
        circuit.failures += 1
        state = self._state(circuit, now)
        if state == "half_open" or (state == "closed" and circuit.failures >= self._threshold):
            circuit.opened_at = now
            circuit.trial_at = None
        # already open (a call that started before it opened): keep the cooldown running as it is

    def reset(self) -> None:
        self._circuits.clear()

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Tracked targets as "provider/model" -> state, consecutive_failures, opened_at (seconds ago)."""
        now = self._clock()
        return {
            f"{provider}/{model}": {
                "state": self._state(c, now),
                "consecutive_failures": c.failures,
                "opened_at": None if c.opened_at is None else round(now - c.opened_at, 3),
            }
            for (provider, model), c in self._circuits.items()
        }


__all__ = ["CircuitBreaker", "Key", "State"]
