"""Running spend: per (subject, period) a `Window` of USD and tokens spent and held by requests in flight, kept
in memory by `MemorySpend` (rolled over at the period's UTC boundary), the `Hold` a request's reservation is,
and the `SharedSpend` protocol a shared store (Redis: rhetor.storage.redis_budgets) implements so every replica
counts against one spend. Knows budget periods and subjects; nothing of budgets' rules, HTTP, SQL or Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

from rhetor.governance.budget import GLOBAL, PERIODS, Period, Subject, period_bounds

SLOT: Final[dict[str, int]] = {period: i for i, period in enumerate(PERIODS)}
SCOPES: Final = ("component", "key", "task")  # a usage record's subjects besides the global one, in `add`'s order
_ONLY_GLOBAL: Final[tuple[Subject, ...]] = (GLOBAL,)
_NO_NAMES: Final[tuple[str | None, str | None, str | None]] = (None, None, None)
_INF: Final = float("inf")


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

    def slots(self, subject: Subject) -> list[Window | None]: ...

    def tracked(self, subject: Subject) -> bool: ...

    def add(self, names: tuple[str | None, str | None, str | None], ts: float, usd: float,
            tokens: int) -> tuple[Subject, ...]: ...


class MemorySpend:
    """Windows per subject, one per period, created for the subjects budgets name; bounded by the number of
    budgets and keys."""

    def __init__(self) -> None:
        self._windows: dict[Subject, list[Window | None]] = {}  # subject -> its windows, in PERIODS' order
        # scope -> name -> the same windows, for the subjects other than the global one: a record of a component,
        # key and task none of which is tracked costs one test of this dict's emptiness, no Subject built or hashed
        self._named: dict[str, dict[str, list[Window | None]]] = {}
        # [latest start, earliest end) of the global subject's three windows, all made: a record started in it
        # counts in each (empty until they are; emptied when `window` makes a new one). Two floats, not a tuple:
        # native doubles in the compiled build, where a tuple attribute is boxed and unpacked on every `add`
        self._global_lo, self._global_hi = _INF, -_INF
        # the global subject's windows (the list in `_windows`), once made: read by `add` without hashing GLOBAL
        # (in the compiled build, an imported constant is a look-up in the module's dict and a tuple re-boxed:
        # ~0.5k instructions a record, callgrind)
        self._global: list[Window | None] | None = None

    def window(self, subject: Subject, period: Period, now: float) -> Window:
        slots = self._windows.get(subject)
        if slots is None:
            slots = self.slots(subject)
        i = SLOT[period]
        w = slots[i]
        if w is None or now >= w.end:
            w = slots[i] = Window(*period_bounds(period, now))
            if subject == GLOBAL:
                self._global_lo, self._global_hi = _INF, -_INF
        return w

    def slots(self, subject: Subject) -> list[Window | None]:
        """The subject's windows in PERIODS' order (None: not made yet), the same list for good: a caller may keep
        it and read a window from it while the window is current (now < its end), as `window` would answer."""
        slots = self._windows.get(subject)
        if slots is None:
            slots = self._windows[subject] = [None] * len(PERIODS)
            if subject != GLOBAL:
                self._named.setdefault(subject[0], {})[subject[1]] = slots
            else:
                self._global = slots
        return slots

    def tracked(self, subject: Subject) -> bool:
        return subject in self._windows

    @property
    def named(self) -> bool:
        """Whether any subject besides the global one is tracked (else `add` reads no names)."""
        return bool(self._named)

    def add_global(self, ts: float, usd: float, tokens: int) -> tuple[Subject, ...]:
        """`add` when no named subject is tracked (`named` false): the record's names are not even read. A method of
        its own: choosing a names tuple in the caller instead measured ~0.3k more (governance_micro.py book_record)."""
        return self.add(_NO_NAMES, ts, usd, tokens)

    def add(self, names: tuple[str | None, str | None, str | None], ts: float, usd: float,
            tokens: int) -> tuple[Subject, ...]:
        """Spend of a request that started at `ts`, added to every period of the global subject and of its
        component, key and task (`names`, in SCOPES' order) when tracked (the others are skipped); the subjects it
        was added to. One call per usage record."""
        added: tuple[Subject, ...] = ()
        slots = self._global
        if slots is not None:
            if self._global_lo <= ts < self._global_hi:  # in every one of its windows: three adds, no test per window
                # (~2k)
                day, week, month = slots
                assert day is not None and week is not None and month is not None  # (the span says all are made)
                day.usd += usd
                day.tokens += tokens
                week.usd += usd
                week.tokens += tokens
                month.usd += usd
                month.tokens += tokens
            else:
                self._add(GLOBAL, slots, ts, usd, tokens)
                made = [w for w in slots if w is not None]
                if len(made) == len(PERIODS):
                    self._global_lo, self._global_hi = max(w.start for w in made), min(w.end for w in made)
            added = _ONLY_GLOBAL
        if self._named:
            for scope, name in zip(SCOPES, names, strict=True):
                found = self._named.get(scope)
                if found is not None and name is not None:
                    slots = found.get(name)
                    if slots is not None:
                        self._add((scope, name), slots, ts, usd, tokens)
                        added = (*added, (scope, name))
        return added

    def _add(self, subject: Subject, slots: list[Window | None], ts: float, usd: float, tokens: int) -> None:
        i = 0
        for w in slots:
            if w is None or ts >= w.end:
                w = self.window(subject, PERIODS[i], ts)  # type: ignore[arg-type]
            if ts >= w.start:  # a request started in an earlier period is that period's spend
                w.usd += usd
                w.tokens += tokens
            i += 1


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


__all__ = ["SCOPES", "SLOT", "Figures", "Hold", "MemorySpend", "Releasable", "SharedSpend", "SpendCounters", "Window",
           "WindowRef"]
