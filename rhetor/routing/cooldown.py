"""Retry-After windows per (provider, model): when an upstream asks us to come back in N seconds, the
following requests skip that target (if another one can serve them) until the window has passed.

Bounded (the oldest entries go first past `max_keys`), no I/O, no locks: it lives on the event-loop
thread. Knows nothing of providers, HTTP or the breaker — only keys, seconds and a clock. `on_note` hears the
windows this process opens (rhetor.storage.redis_breakers publishes them); another replica's are applied with
`note(..., remote=True)`, which does not call it back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Key = tuple[str, str]  # (provider, model)


class Cooldowns:
    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_keys: int = 1024) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._until: dict[Key, float] = {}
        self.on_note: Callable[[Key, float], None] | None = None

    def note(self, key: Key, seconds: float, *, remote: bool = False) -> None:
        """The upstream asked for `seconds` of quiet; an existing longer window is kept."""
        if seconds <= 0:
            return
        until = self._clock() + seconds
        if until > self._until.get(key, 0.0):
            self._until.pop(key, None)  # re-insert: dict order is the age order used for eviction
            self._until[key] = until
            while len(self._until) > self._max_keys:
                del self._until[next(iter(self._until))]
            if not remote and self.on_note is not None:
                self.on_note(key, seconds)

    def remaining(self, key: Key) -> float:
        """Seconds left in `key`'s window; 0 when there is none (a passed window is forgotten)."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self._clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left

    def clear(self) -> None:
        self._until.clear()

    def snapshot(self) -> dict[str, float]:
        """"provider/model" -> seconds left, for the targets still cooling down."""
        now = self._clock()
        return {f"{p}/{m}": round(until - now, 3) for (p, m), until in self._until.items() if until > now}


__all__ = ["Cooldowns", "Key"]
