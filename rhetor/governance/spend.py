"""Running spend: per (subject, period) a `Window` of USD and tokens spent and held by requests in flight, kept
in memory by `MemorySpend` (rolled over at the period's UTC boundary), the `Hold` a request's reservation is,
and the `SharedSpend` protocol a shared store (Redis: rhetor.storage.redis_budgets) implements so every replica
counts against one spend. Knows budget periods and subjects; nothing of budgets' rules, HTTP, SQL or Redis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from rhetor.governance.budget import PERIODS, Period, Subject, period_bounds

_SLOT: dict[str, int] = {period: i for i, period in enumerate(PERIODS)}


@dataclass(slots=True)
class Window:
    """Spend of one subject in one period; `held_*` is reserved by requests still in flight."""

    start: float
    end: float
    usd: float = 0.0
    tokens: int = 0
    held_usd: float = 0.0
    held_tokens: int = 0


class SpendCounters(Protocol):
    """Where running spend lives in this process (the local mirror when a SharedSpend is configured)."""

    def window(self, subject: Subject, period: Period, now: float) -> Window: ...

    def tracked(self, subject: Subject) -> bool: ...

    def add(self, subjects: Iterable[Subject], ts: float, usd: float, tokens: int) -> list[Subject]: ...


class MemorySpend:
    """Windows per subject, one per period, created for the subjects budgets name; bounded by the number of
    budgets and keys."""

    def __init__(self) -> None:
        self._windows: dict[Subject, list[Window | None]] = {}  # subject -> its windows, in PERIODS' order

    def window(self, subject: Subject, period: Period, now: float) -> Window:
        slots = self._windows.get(subject)
        if slots is None:
            slots = self._windows[subject] = [None] * len(PERIODS)
        i = _SLOT[period]
        w = slots[i]
        if w is None or now >= w.end:
            w = slots[i] = Window(*period_bounds(period, now))
        return w

    def tracked(self, subject: Subject) -> bool:
        return subject in self._windows

    def add(self, subjects: Iterable[Subject], ts: float, usd: float, tokens: int) -> list[Subject]:
        """Spend of a request that started at `ts`, added to every period of each tracked subject among `subjects`
        (the others are skipped); the subjects it was added to. One call per usage record."""
        added: list[Subject] = []
        tracked = self._windows.get
        for subject in subjects:
            slots = tracked(subject)
            if slots is None:
                continue
            i = 0
            for w in slots:
                if w is None or ts >= w.end:
                    w = self.window(subject, PERIODS[i], ts)  # type: ignore[arg-type]
                if ts >= w.start:  # a request started in an earlier period is that period's spend
                    w.usd += usd
                    w.tokens += tokens
                i += 1
            added.append(subject)
        return added


class Hold:
    """The estimate a request reserved on each of its windows (the same amount on each); released (once) when its
    record arrives or it ends."""

    __slots__ = ("tokens", "usd", "windows")

    def __init__(self, windows: list[Window] | None = None, usd: float = 0.0, tokens: int = 0) -> None:
        self.windows, self.usd, self.tokens = windows, usd, tokens

    def __del__(self) -> None:  # a stream dropped before it was read never runs its end: free its reservation
        if self.windows:
            self.release()

    def release(self) -> None:
        windows, self.windows = self.windows, None
        if windows:
            usd, tokens = self.usd, self.tokens
            for w in windows:
                left = w.held_usd - usd
                w.held_usd = left if left > 0.0 else 0.0
                left_tokens = w.held_tokens - tokens
                w.held_tokens = left_tokens if left_tokens > 0 else 0


class Releasable(Protocol):
    def release(self) -> None: ...


WindowRef = tuple[str, str, str, float, float]  # (scope, name, period, start, end) of a shared window
Figures = tuple[float, int, float, int]  # (spent usd, tokens, held usd, held tokens)


class SharedSpend(Protocol):
    """Spend shared by every replica (rhetor.storage.redis_budgets.RedisSpend)."""

    @property
    def shared(self) -> bool: ...

    async def reserve(self, refs: list[WindowRef], blocks: list[tuple[float | None, int | None]], usd: float,
                      tokens: int) -> tuple[bool, list[Figures], Releasable | None] | None: ...

    async def figures(self, refs: list[WindowRef]) -> list[Figures] | None: ...

    def add(self, refs: list[WindowRef], usd: float, tokens: int) -> None: ...

    async def seed(self, refs: list[WindowRef], figures: list[tuple[float, int]]) -> None: ...


__all__ = ["Figures", "Hold", "MemorySpend", "Releasable", "SharedSpend", "SpendCounters", "Window", "WindowRef"]
