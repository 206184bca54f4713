"""The governance gate: what the gateway asks of budgets and the response cache for each request, after routing
and before any upstream call, so every front gets the same admission.

1. The cache (opt-in: the request's `x-rhetor-cache`, else the caller key's default, else the tasks.json entry's
   `"cache": true`): `use` looks the normalized request up and, on a hit, the request is answered from it (no
   budget is charged: it costs nothing); `refresh` skips the lookup; either stores a completed answer.
2. The budgets that cap the request (global, its component, its key — or the budget its key names —, its task):
   `block` raises BudgetExceededError before any upstream call; `downgrade` re-routes to the budget's cheaper
   target; `warn` and the soft thresholds add `budget_warnings`. An estimate is reserved until the request ends.
With Redis (rhetor.storage) both are shared by every replica: `admit` then costs one round trip for the cache
lookup when the request asks for the cache, and one for the budgets when a budget caps it — none otherwise.

What the reply says about it rides on `Notes` (set on the request by the web layer): body fields (`cached`,
`budget_warnings`, `downgraded`) and response headers (`x-rhetor-cache`, `x-rhetor-budget-warning`,
`x-rhetor-budget-downgrade`). Knows routes, normalized types, budgets, the cache and prices; nothing of HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from rhetor.errors import RhetorError
from rhetor.governance.budgets import Admission, BudgetBook, Hold, Releasable
from rhetor.governance.cache import CachedReply, CacheMode, ResponseCache, assembled, cache_key, reply_size
from rhetor.governance.meter import ANONYMOUS, estimate_input
from rhetor.governance.prices import PriceTable
from rhetor.providers import Providers
from rhetor.providers.base import Provider
from rhetor.routing.config import TaskConfig
from rhetor.routing.fallback import Attempt, RunInfo
from rhetor.routing.router import Route, Target
from rhetor.types import ChatRequest, ChatResponse, Message, StreamEvent

Builder = Callable[[Target, Provider], ChatRequest]
DEFAULT_OUTPUT_ESTIMATE = 256  # reserved output tokens when the request sets no max_tokens


class Later:
    """`Gate.admit_now`'s answer when the admission has something to await (a cache lookup, shared budgets)."""

    __slots__ = ()


LATER = Later()


class Notes:
    """Governance's word on one request: set up by the web layer (cache directive, the key's budget and cache
    default), filled by the gate, read by the fronts (`fields`) and the middleware (`headers`)."""

    __slots__ = ("cache_default", "cache_mode", "fields", "headers", "key_budget")

    def __init__(self, cache_mode: CacheMode | None = None, key_budget: str | None = None,
                 cache_default: CacheMode | None = None) -> None:
        self.cache_mode, self.key_budget, self.cache_default = cache_mode, key_budget, cache_default
        self.fields: dict[str, Any] | None = None
        self.headers: list[tuple[bytes, bytes]] | None = None

    def note(self, name: str, value: Any, header: str | None = None, text: str | None = None) -> None:
        if self.fields is None:
            self.fields = {}
        self.fields[name] = value
        if header is not None and text is not None:
            if self.headers is None:
                self.headers = []
            self.headers.append((header.encode(), text.encode("ascii", "replace")[:1024]))


class Prepared(Protocol):
    """What the gate reads of the gateway's prepared request (its `route` may be replaced by a downgrade)."""

    route: Route
    system: str | None
    history: list[Message]
    new_turn: list[Message]
    inp: Any  # ChatInput: key_id, notes


class Ticket:
    """One admitted request: its reservation, where its answer is cached, or the cached answer itself."""

    __slots__ = ("_builder", "_providers", "cache", "first", "hit", "hold", "key")

    def __init__(self, hold: Releasable | None, cache: ResponseCache | None, key: str | None, first: Target | None,
                 builder: Builder, providers: Providers, hit: CachedReply | None = None) -> None:
        self.hold, self.cache, self.key, self.hit = hold, cache, key, hit
        self.first = first  # None: the route was downgraded after the lookup
        # The builder (a closure over the prepared request, which holds this ticket) only when caching: kept
        # otherwise it makes every budgeted request a reference cycle, freed only by the cyclic GC (~12k
        # instructions a request, benchmarks/instructions.py).
        self._builder: Builder | None = builder if key is not None else None
        self._providers = providers

    def release(self) -> None:
        if self.hold is not None:
            self.hold.release()

    def serve(self, info: RunInfo) -> ChatResponse:
        """The cached answer (a copy), as if its target had answered."""
        assert self.hit is not None
        r = self.hit.response
        info.target = Target(r.provider, r.model)
        info.attempts.append(Attempt(r.provider, r.model, "cached"))
        return replace(r, usage=replace(r.usage), tool_calls=list(r.tool_calls))

    def _key_for(self, target: Target | None) -> str | None:
        """The request's key, whoever answered it (a fallback answers the same request); after a budget's
        downgrade, the key of the target that answered — never a cheap answer under the dear model's key."""
        if self.key is None or target is None:
            return None
        if self.first is not None:
            return self.key
        assert self._builder is not None  # kept whenever there is a key
        try:
            request = self._builder(target, self._providers.get(target.provider))
        except RhetorError:
            return None
        return cache_key(target.provider, target.model, request)

    def answered(self, response: ChatResponse, info: RunInfo) -> None:
        if self.key is None:  # not caching (a budget's reservation only)
            return
        key = self._key_for(info.target)
        if key is not None and self.cache is not None and response.finish_reason not in ("error", "cancelled"):
            self.cache.put(key, CachedReply(response, None, size=reply_size(response, None)))

    def streamed(self, events: list[StreamEvent], info: RunInfo, simulated: bool) -> None:
        """A stream that completed (never an error or a cancelled one: the caller checks)."""
        key = self._key_for(info.target)
        if key is None or self.cache is None or info.target is None:
            return
        response = assembled(events, info.target.provider, info.target.model, simulated)
        self.cache.put(key, CachedReply(response, tuple(events), size=reply_size(response, events)))

    @property
    def caching(self) -> bool:
        return self.key is not None


class Reservation(Ticket):
    """A Ticket that is a budget's reservation only (no cache): three slots set instead of seven; the cache slots
    are never read while `key` is None."""

    __slots__ = ()

    def __init__(self, hold: Releasable) -> None:  # no super().__init__: the cache slots stay unset
        self.hold, self.key, self.hit = hold, None, None

    def answered(self, response: ChatResponse, info: RunInfo) -> None:
        return None


class Gate:
    def __init__(self, prices: PriceTable, config: TaskConfig, budgets: BudgetBook | None = None,
                 cache: ResponseCache | None = None) -> None:
        self.prices, self.config, self.budgets, self.cache = prices, config, budgets, cache
        # tasks.json keys whose entry says "cache": true
        self.cached_routes = frozenset(k for k, e in config.root.items() if getattr(e, "cache", False))

    def admit_now(self, prepared: Prepared, rec: Any) -> Ticket | Later | None:
        """`admit` without a coroutine when it has nothing to await — no cache for this request, the budgets'
        spend in process (no Redis) —, else LATER: then await `admit`. The gateway's call (a coroutine and its
        await cost ~1.5k instructions a request, benchmarks/instructions.py)."""
        budgets = self.budgets
        if budgets is not None and budgets.shared is not None:
            return LATER
        inp = prepared.inp
        notes: Notes | None = inp.notes
        if notes is None:
            notes = inp.notes = Notes()
        rt = prepared.route
        if self.cache is not None and rt.targets and self._mode(notes, rt) is not None:
            return LATER
        hold = None if budgets is None else self._judged(budgets, prepared, notes, rt, rec)
        return None if hold is None else Reservation(hold)

    async def admit(self, prepared: Prepared, builder: Builder, providers: Providers, rec: Any) -> Ticket | None:
        """Cache lookup, then budgets (see the module docstring). `rec` is the ledger's record, if any."""
        inp = prepared.inp
        notes: Notes | None = inp.notes
        if notes is None:
            notes = inp.notes = Notes()
        rt = prepared.route
        first = rt.targets[0] if rt.targets else None
        key, mode = None, self._mode(notes, rt)
        if mode is not None and first is not None and self.cache is not None:
            try:
                key = cache_key(first.provider, first.model, builder(first, providers.get(first.provider)))
            except RhetorError:
                key = None  # the runner reports an unknown provider or model in its own words
            if key is not None and mode == "use":
                hit = await self.cache.lookup(key)
                if hit is not None:
                    notes.note("cached", True, "x-rhetor-cache", "hit")
                    if rec is not None:
                        rec.cache_hit = True
                    return Ticket(None, self.cache, None, first, builder, providers, hit)
            if key is not None:
                notes.note("cached", False, "x-rhetor-cache", "miss" if mode == "use" else "refresh")
        hold: Releasable | None = None
        budgets = self.budgets
        if budgets is not None:
            if budgets.shared is None:
                hold = self._judged(budgets, prepared, notes, rt, rec)
            else:
                applicable = budgets.applicable(rt.component, inp.key_id or ANONYMOUS, rt.task_type,
                                                notes.key_budget)
                if applicable and rt.targets:
                    usd, tokens = self._estimate(prepared, rt)  # the round trip is made either way
                    admission = await budgets.reserve(applicable, usd, tokens)
                    hold = admission.hold
                    if admission.warnings or admission.downgrade is not None:
                        self._noted(prepared, notes, rec, admission)
        if key is None:
            # a budget's reservation only: a Reservation, the Ticket without its cache slots
            return None if hold is None else Reservation(hold)
        return Ticket(hold, self.cache, key, first if prepared.route is rt else None, builder, providers)

    def _judged(self, budgets: BudgetBook, prepared: Prepared, notes: Notes, rt: Route, rec: Any) -> Hold | None:
        """The budgets' word on a request, their spend in process (no coroutine: BudgetBook.judge): `block`
        raises, `downgrade` and warnings are noted; the hold when a budget holds an estimate."""
        applicable = budgets.speaking(rt.component, prepared.inp.key_id or ANONYMOUS, rt.task_type,
                                      notes.key_budget)
        if applicable is None or not rt.targets:
            return None
        # the estimate is what a request holds: none to make when only warn budgets apply; no Admission is built
        # when no budget has a word to say (BudgetBook.judge)
        usd, tokens = self._estimate(prepared, rt) if applicable.holds else (0.0, 0)
        admission, hold = budgets.judge(applicable, usd, tokens)
        if admission is not None and (admission.warnings or admission.downgrade is not None):
            self._noted(prepared, notes, rec, admission)
        return hold

    def _mode(self, notes: Notes, rt: Route) -> CacheMode | None:
        mode = notes.cache_mode or notes.cache_default or ("use" if rt.key in self.cached_routes else None)
        return None if mode == "off" else mode

    def _estimate(self, prepared: Prepared, rt: Route) -> tuple[float, int]:
        """(USD, tokens) to reserve: the input's estimate and max_tokens (or a default) at the dearest target that
        may answer (fallback)."""
        history, new_turn, system = prepared.history, prepared.new_turn, prepared.system
        if not history and len(new_turn) == 1:  # one new message: estimate_input's arithmetic, without its list and
            # join (~4k instructions of a budgeted request, callgrind)
            estimate_in = max(1, (len(system or "") + len(new_turn[0].content) + 3) // 4) + 4
        else:
            estimate_in = estimate_input(system, [*history, *new_turn])
        estimate_out = rt.options.get("max_tokens") or DEFAULT_OUTPUT_ESTIMATE
        estimate_usd = 0.0
        for t in rt.targets:
            price = self.prices.lookup(t.provider, t.model)
            if price is not None:
                estimate_usd = max(estimate_usd, (estimate_in * price.input + estimate_out * price.output) / 1e6)
        return estimate_usd, estimate_in + estimate_out

    def _noted(self, prepared: Prepared, notes: Notes, rec: Any, admission: Admission) -> None:
        """The budgets' word on the reply: warnings; a downgrade re-routes the request."""
        if admission.warnings:
            notes.note("budget_warnings", admission.warnings, "x-rhetor-budget-warning", admission.warnings[0])
        if admission.downgrade is not None:
            rt = prepared.route
            first = rt.targets[0]
            budget, to = admission.downgrade
            provider, _, model = to.partition("/")
            was = f"{first.provider}/{first.model}"
            if (provider, model) != (first.provider, first.model):
                prepared.route = replace(rt, targets=(Target(provider, model, first.timeout_s, first.retries),))
                notes.note("downgraded", {"from": was, "to": to, "budget": budget.id}, "x-rhetor-budget-downgrade",
                           f"{was} -> {to} (budget {budget.id})")
                if rec is not None:
                    rec.downgraded_from = was


__all__ = ["LATER", "Gate", "Later", "Notes", "Prepared", "Reservation", "Ticket"]
