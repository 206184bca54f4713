"""The budget book: the budgets in force (rhetor.governance.budget) and what they admit. The ledger's records feed
it (`record`, called by the meter when a request ends, with its real cost) into the running spend
(rhetor.governance.spend: one window per subject and period, rolled over at the period's UTC boundary); `admit`
reserves an estimate for each admitted request until it ends on the windows a `block` or `downgrade` budget
judges, so concurrent requests overshoot a `block` budget (or a `downgrade` budget at the dear target) by at
most those already in flight when it was crossed; a `warn` budget only speaks, so its windows hold nothing (its
warnings count the spend recorded, and the estimates others hold on the same window). Admission and recording
are dict lookups — no I/O.
With a `SharedSpend` (Redis, rhetor.storage.redis_budgets) `reserve` checks and reserves on the shared windows in
one atomic call instead — one budget for every replica; there every window checked holds the estimate, the round
trip being made either way — and the local windows become a mirror of them
(refreshed by `refresh`), which `admit` judges against while the shared store is unreachable. Knows nothing of
HTTP, fronts, SQL, Redis or providers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from rhetor.errors import BudgetExceededError
from rhetor.governance.budget import (
    BUDGET_ID,
    GLOBAL,
    PERIODS,
    Budget,
    Period,
    Scope,
    Subject,
    iso,
    parse_budget,
    period_bounds,
)
from rhetor.governance.spend import (
    SLOT,
    Figures,
    Hold,
    MemorySpend,
    Releasable,
    SharedSpend,
    SpendCounters,
    Window,
    WindowRef,
)

APPLICABLE_MEMO: Final = 4096  # memoized (component, key, task, key budget) combinations
_now: Final = time.time  # a C static in the compiled build: no look-up of `time` on the module a call (~0.3k)
# (period, usd, tokens, usd at warn_at, tokens at warn_at, whether an admitted request holds an estimate on it)
Plan = tuple[Period, float | None, int | None, float, float, bool]


class Row:
    """One (budget, subject, period) `judge` walks: the subject's windows and the period's slot in them (the window
    read from the list while current, not through `SpendCounters.window`: ~1.3k instructions, callgrind), the
    thresholds it speaks at, whether it holds an estimate. A class, not a tuple: in the compiled build its fields
    are read natively, where a tuple row is unboxed field by field on every request (~0.5k a row)."""

    __slots__ = ("budget", "holds", "i", "plan", "slots", "subject", "warn_tokens", "warn_usd")

    def __init__(self, budget: Budget, subject: Subject, plan: Plan, slots: list[Window | None]) -> None:
        self.budget, self.subject, self.plan, self.slots = budget, subject, plan, slots
        self.i: int = SLOT[plan[0]]
        self.warn_usd: float = plan[3]
        self.warn_tokens: float = plan[4]
        self.holds: bool = plan[5]


class Applicable:
    """`applicable`'s answer: the budgets that cap a request, each with the subject whose spend it counts (iterate
    it; false when none); with the `Row`s `judge` walks, made once, and whether any of them holds an estimate.
    Holds its list rather than being one: a compiled class (rhetor.native) cannot subclass list."""

    __slots__ = ("found", "holds", "rows")

    def __init__(self, found: list[tuple[Budget, Subject]], plans: dict[str, tuple[Plan, ...]],
                 counters: SpendCounters) -> None:
        self.found = found
        self.rows = tuple(Row(budget, subject, plan, counters.slots(subject))
                          for budget, subject in found for plan in plans[budget.id])
        self.holds = any(row.holds for row in self.rows)

    def __bool__(self) -> bool:
        return bool(self.found)

    def __len__(self) -> int:
        return len(self.found)

    def __iter__(self) -> Iterator[tuple[Budget, Subject]]:
        return iter(self.found)


@dataclass(slots=True)
class Admission:
    warnings: list[str] = field(default_factory=list)
    downgrade: tuple[Budget, str] | None = None  # (budget, provider/model)
    hold: Releasable | None = None


class BudgetBook:
    """The budgets in force and their spend. `admit` on the way in, `record` (a UsageSink) on the way out."""

    def __init__(self, counters: SpendCounters | None = None, shared: SharedSpend | None = None) -> None:
        self.counters: SpendCounters = counters if counters is not None else MemorySpend()
        # the same counters as their own class when they are the in-process ones: `record` then calls `add`
        # directly in the compiled build (rhetor.native), not through a method lookup (~0.6k instructions a record)
        self._memory = self.counters if isinstance(self.counters, MemorySpend) else None
        self.shared = shared
        self._remote_held: dict[tuple[Subject, str], tuple[float, int]] = {}  # in flight on every replica
        self.budgets: dict[str, Budget] = {}
        self._by_subject: dict[Subject, list[Budget]] = {}
        # budget id -> its limits as Plans, computed once
        self._plans: dict[str, tuple[Plan, ...]] = {}
        self.sources: dict[str, str] = {}  # budget id -> "env" | "api"
        # (component, key id, task, key's budget) -> `applicable`'s answer; emptied by every change of the budgets
        self._applicable: dict[tuple[str | None, ...], Applicable] = {}

    # -- definitions --------------------------------------------------------------------------------------------
    def put(self, budget: Budget, source: str = "api") -> None:
        self.budgets[budget.id] = budget
        self.sources[budget.id] = source
        self._reindex()

    def remove(self, budget_id: str) -> bool:
        found = self.budgets.pop(budget_id, None) is not None
        self.sources.pop(budget_id, None)
        self._reindex()
        return found

    def _reindex(self) -> None:
        index: dict[Subject, list[Budget]] = {}
        for b in self.budgets.values():
            index.setdefault(b.subject, []).append(b)
        inf = float("inf")
        self._plans = {b.id: tuple((p, u, t, inf if u is None else u * b.warn_at, inf if t is None else t * b.warn_at,
                                    b.policy != "warn") for p, u, t in b.limits()) for b in self.budgets.values()}
        self._by_subject = index
        self._applicable = {}

    def subjects(self) -> list[Subject]:
        return list(self._by_subject)

    # -- hot path ---------------------------------------------------------------------------------------------
    def applicable(self, component: str | None, key_id: str | None, task: str | None,
                   key_budget: str | None = None) -> Applicable:
        """The budgets that cap a request, each with the subject whose spend it counts (not to be modified)."""
        memo = self._applicable
        found = memo.get((component, key_id, task, key_budget))
        if found is None:
            if len(memo) >= APPLICABLE_MEMO:  # bounded: components, keys and tasks are many only under abuse
                memo.clear()
            found = memo[(component, key_id, task, key_budget)] = Applicable(
                self._applicable_to(component, key_id, task, key_budget), self._plans, self.counters)
        return found

    def _applicable_to(self, component: str | None, key_id: str | None, task: str | None,
                       key_budget: str | None) -> list[tuple[Budget, Subject]]:
        index = self._by_subject
        if not index and key_budget is None:
            return []
        out = [(b, GLOBAL) for b in index.get(GLOBAL, ())]
        for scope, name in (("component", component), ("key", key_id), ("task", task)):
            if name is not None:
                subject = (scope, name)
                out += [(b, subject) for b in index.get(subject, ())]
        named = self.budgets.get(key_budget) if key_budget is not None else None
        if named is not None and key_id is not None and all(b.id != named.id for b, _ in out):
            out.append((named, ("key", key_id)))  # a key's budget_id: those limits, on that key's own spend
        return out

    def speaking(self, component: str | None, key_id: str | None, task: str | None,
                 key_budget: str | None = None) -> Applicable | None:
        """`applicable`, or None when `judge` would have nothing to say or hold: no budget applies, or only `warn`
        budgets do and every window they read is current and under its warning thresholds. The gate's first
        call: the common request costs one call, not `applicable`, its tests and `judge` (~1k instructions)."""
        found = self.applicable(component, key_id, task, key_budget)
        if not found.found:
            return None
        if found.holds:
            return found
        now = _now()
        for row in found.rows:
            w = row.slots[row.i]
            if w is None or now >= w.end or w.usd + w.held_usd >= row.warn_usd \
                    or w.tokens + w.held_tokens >= row.warn_tokens:
                return found  # (`judge` makes the window, or speaks)
        return None

    def admit(self, applicable: Applicable, estimate_usd: float, estimate_tokens: int,
              now: float | None = None) -> Admission:
        """Warnings, a downgrade or a BudgetExceededError; reserves the estimate on every window a `block` or
        `downgrade` budget checks (no hold when only `warn` budgets apply)."""
        result, hold = self.judge(applicable, estimate_usd, estimate_tokens, now)
        if result is None:
            result = Admission()
        result.hold = hold
        return result

    def judge(self, applicable: Applicable, estimate_usd: float, estimate_tokens: int,
              now: float | None = None) -> tuple[Admission | None, Hold | None]:
        """`admit` as (its warnings or downgrade — None when there is nothing to say —, its hold): the gate's call,
        which builds no Admission for the common request no budget has a word about (~4k instructions, callgrind),
        and no Hold when only `warn` budgets apply (~9k: the Hold, the gate's Reservation, their release)."""
        now = _now() if now is None else now
        result: Admission | None = None
        held: list[Window] = []
        for row in applicable.rows:
            w = row.slots[row.i]
            if w is None or now >= w.end:  # not made yet, or the period is over: `window` makes the current one
                w = self.counters.window(row.subject, row.plan[0], now)  # (looked up here only: ~0.3k a call)
            if w.usd + w.held_usd >= row.warn_usd or w.tokens + w.held_tokens >= row.warn_tokens:
                if result is None:
                    result = Admission()
                _weigh(row.budget, row.subject, row.plan, w, result)  # at the warning threshold or over the limit
            if row.holds:
                for h in held:  # each window once, in the order met
                    if h is w:
                        break
                else:
                    held.append(w)
        if not held:
            return result, None
        for w in held:
            w.held_usd += estimate_usd
            w.held_tokens += estimate_tokens
        return result, Hold(held, estimate_usd, estimate_tokens)

    def _judge(self, applicable: Applicable, views: dict[tuple[Subject, Period], Window], result: Admission) -> None:
        for row in applicable.rows:
            w = views[(row.subject, row.plan[0])]
            if w.usd + w.held_usd >= row.warn_usd or w.tokens + w.held_tokens >= row.warn_tokens:
                _weigh(row.budget, row.subject, row.plan, w, result)

    async def reserve(self, applicable: Applicable, estimate_usd: float, estimate_tokens: int,
                      now: float | None = None) -> Admission:
        """`admit` on the shared windows (one atomic round trip); `admit` itself without them or while the
        shared store is unreachable (then this process counts against its mirror of the last shared figures)."""
        shared = self.shared
        if shared is None or not shared.shared:
            return self.admit(applicable, estimate_usd, estimate_tokens, now)
        now = time.time() if now is None else now
        index: dict[tuple[Subject, Period], int] = {}
        refs: list[WindowRef] = []
        blocks: list[tuple[float | None, int | None]] = []
        for budget, subject in applicable:
            for period, limit_usd, limit_tokens, *_ in self._plans[budget.id]:
                i = index.get((subject, period))
                if i is None:
                    w = self.counters.window(subject, period, now)
                    i = index[(subject, period)] = len(refs)
                    refs.append((subject[0], subject[1], period, w.start, w.end))
                    blocks.append((None, None))
                if budget.policy == "block":
                    bu, bt = blocks[i]
                    least_tokens = _least(bt, limit_tokens)
                    blocks[i] = (_least(bu, limit_usd), None if least_tokens is None else int(least_tokens))
        got = await shared.reserve(refs, blocks, estimate_usd, estimate_tokens)
        if got is None:
            return self.admit(applicable, estimate_usd, estimate_tokens, now)
        admitted, figures, hold = got
        views = {k: self._mirror(k[0], k[1], now, figures[i]) for k, i in index.items()}
        result = Admission()
        try:
            self._judge(applicable, views, result)
        except BudgetExceededError:
            if hold is not None:
                hold.release()
            raise
        assert admitted, "the shared store refused a request no block budget refuses"
        result.hold = hold
        return result

    def _mirror(self, subject: Subject, period: Period, now: float, figures: Figures) -> Window:
        """Take the shared figures into the local window; the view (with every replica's holds) to judge by."""
        usd, tokens, held_usd, held_tokens = figures
        w = self.counters.window(subject, period, now)
        w.usd, w.tokens = usd, tokens
        self._remote_held[(subject, period)] = (held_usd, held_tokens)
        return Window(w.start, w.end, usd, tokens, held_usd, held_tokens)

    async def refresh(self, now: float | None = None) -> None:
        """Re-read the shared figures of every budget's windows into the local mirror (status, degraded mode)."""
        if self.shared is None:
            return
        now = time.time() if now is None else now
        keys: list[tuple[Subject, Period]] = [(s, p) for s in self.subjects() for p in PERIODS]  # type: ignore[misc]
        windows = [self.counters.window(s, p, now) for s, p in keys]
        figures = await self.shared.figures([(s[0], s[1], p, w.start, w.end)
                                             for (s, p), w in zip(keys, windows, strict=True)])
        if figures is not None:  # None: Redis unreachable, the mirror keeps its last figures
            for (subject, period), found in zip(keys, figures, strict=True):
                self._mirror(subject, period, now, found)

    def record(self, rec: Any) -> None:
        """A finished request's real cost, added to every tracked subject it belongs to (a UsageSink)."""
        tokens: int = rec.input_tokens + rec.output_tokens
        usd: float = rec.cost_usd  # (each attribute of a record read once: a generic look-up in the compiled build)
        if usd == 0 and tokens == 0:  # (typed: native comparisons in the compiled build, not generic ones)
            return
        memory = self._memory
        if memory is not None and not memory.named:  # only the global budget's spend: no names to read (~0.6k)
            added = memory.add_global(rec.ts, usd, tokens)
        else:
            names = (rec.component, rec.key_id, rec.task_type)
            added = memory.add(names, rec.ts, usd, tokens) if memory is not None else \
                self.counters.add(names, rec.ts, usd, tokens)
        shared = self.shared
        if shared is not None:
            for scope, name in added:  # the shared windows of the period the request started in
                refs: list[WindowRef] = [(scope, name, p, *period_bounds(p, rec.ts))  # type: ignore[arg-type]
                                         for p in PERIODS]
                shared.add(refs, usd, tokens)

    # -- inspection ------------------------------------------------------------------------------------------
    def status(self, budget: Budget, subject: Subject | None = None, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        subject = subject or budget.subject
        periods: dict[str, Any] = {}
        for period, limit_usd, limit_tokens in budget.limits():
            w = self.counters.window(subject, period, now)
            held_usd = w.held_usd + self._remote_held.get((subject, period), (0.0, 0))[0]
            share = max((w.usd / limit_usd) if limit_usd else 0.0, (w.tokens / limit_tokens) if limit_tokens else 0.0)
            periods[period] = {"limit_usd": limit_usd, "limit_tokens": limit_tokens, "spent_usd": round(w.usd, 8),
                               "tokens": w.tokens, "in_flight_usd": round(held_usd, 8),
                               "used": round(share, 4), "start": iso(w.start), "resets_at": iso(w.end),
                               "state": "exceeded" if share >= 1 or (limit_usd == 0 or limit_tokens == 0)
                               else "warning" if share >= budget.warn_at else "ok"}
        return {**budget.model_dump(exclude_none=True), "source": self.sources.get(budget.id, "api"),
                "periods": periods}


def _weigh(budget: Budget, subject: Subject, plan: Plan, w: Window, result: Admission) -> None:
    """A window at or past a budget's warning threshold: block (raise), downgrade or warn, or a soft warning."""
    period, limit_usd, limit_tokens = plan[0], plan[1], plan[2]
    over = _crossed(budget, period, w, limit_usd, limit_tokens, 1.0)
    if over is not None:
        if budget.policy == "block":
            raise BudgetExceededError(_exceeded(budget, subject, period, w, over), **over)
        note = f"{_exceeded(budget, subject, period, w, over)} ({budget.policy})"
        if budget.policy == "downgrade" and result.downgrade is None:
            assert budget.downgrade_to is not None
            result.downgrade = (budget, budget.downgrade_to)
            note = f"{note}: routed to {budget.downgrade_to}"
        result.warnings.append(note)
        return
    soft = _crossed(budget, period, w, limit_usd, limit_tokens, budget.warn_at)
    if soft is not None:
        result.warnings.append(_near(budget, subject, period, w, soft))


def _crossed(budget: Budget, period: Period, w: Window, limit_usd: float | None, limit_tokens: int | None,
             share: float) -> dict[str, Any] | None:
    """The figures of a crossed limit (at `share` of it, in USD or tokens), counting requests in flight."""
    if limit_usd is not None and w.usd + w.held_usd >= limit_usd * share:
        return {"budget": budget.id, "period": period, "limit_usd": limit_usd, "spent_usd": round(w.usd, 6),
                "resets_at": iso(w.end)}
    if limit_tokens is not None and w.tokens + w.held_tokens >= limit_tokens * share:
        return {"budget": budget.id, "period": period, "limit_tokens": limit_tokens, "spent_tokens": w.tokens,
                "resets_at": iso(w.end)}
    return None


def _least(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _who(budget: Budget, subject: Subject) -> str:
    return f"budget {budget.id!r}" + ("" if subject == GLOBAL else f" ({subject[0]} {subject[1]})")


def _figures(over: dict[str, Any], w: Window) -> str:
    if "limit_usd" in over:
        flight = f" + ${w.held_usd:.4f} in flight" if w.held_usd else ""
        return f"limit ${over['limit_usd']:.4f}, spent ${w.usd:.4f}{flight}"
    return f"limit {over['limit_tokens']} tokens, used {w.tokens}"


def _exceeded(budget: Budget, subject: Subject, period: Period, w: Window, over: dict[str, Any]) -> str:
    return (f"{_who(budget, subject)} {period} limit reached: {_figures(over, w)}; "
            f"resets at {over['resets_at']}")


def _near(budget: Budget, subject: Subject, period: Period, w: Window, over: dict[str, Any]) -> str:
    return (f"{_who(budget, subject)} at {budget.warn_at:.0%} or more of its {period} limit: {_figures(over, w)}; "
            f"resets at {over['resets_at']}")


__all__ = ["BUDGET_ID", "GLOBAL", "PERIODS", "Admission", "Applicable", "Budget", "BudgetBook", "Figures", "Hold",
           "MemorySpend", "Period", "Releasable", "Scope", "SharedSpend", "SpendCounters", "Subject", "Window",
           "WindowRef", "iso", "parse_budget", "period_bounds"]
