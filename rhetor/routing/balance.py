"""Load balancing among the deployments that serve one model: a route's target that names a provider (or a
bare model) becomes one target per deployment of its group, ordered by the route's strategy; the fallback
runner then tries them in that order, so a failing, busy, cooling or open-breaker deployment hands over to
the next before the chain moves to another model.

    least-inflight  fewest calls in flight first (the default); ties rotate, so idle deployments share evenly
    weighted        a first pick drawn in proportion to `weight`, the rest by weight
    latency         lowest EWMA of recent time-to-first-token first (unmeasured ones first, to measure them;
                    EXPLORE of picks go to a random one, so a recovered deployment is seen again)
    cost            cheapest (input + output price per 1M tokens: the deployment's `prices`, else the
                    catalogue's) first; ties by calls in flight
Open breakers go last whatever the strategy. Knows deployment names, kinds and a price function, never
provider classes or HTTP. No I/O; lives on the event-loop thread (no locks). `expand` is on every request's
path: with no providers file it returns the route untouched.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Protocol

from rhetor.routing.breaker import CircuitBreaker
from rhetor.routing.router import Route, Target

ALPHA = 0.2  # EWMA weight of the newest sample
EXPLORE = 0.05
PriceOf = Callable[[str, str, str], float | None]  # (deployment, kind, model) -> $ per 1M in+out, None = unknown


class Groups(Protocol):
    """What the balancer needs of rhetor.providers.Providers."""

    strategy: str

    @property
    def deployments(self) -> Mapping[str, object]: ...

    def group(self, kind: str, model: str) -> tuple[str, ...]: ...

    def weight(self, name: str) -> float: ...


class Balancer:
    def __init__(self, groups: Groups, breaker: CircuitBreaker, *, strategy: str | None = None,
                 price: PriceOf | None = None, rng: random.Random | None = None) -> None:
        self._groups = groups
        self._breaker = breaker
        self.strategy = strategy or groups.strategy
        self._price = price
        self._rng = rng or random.Random()
        self.inflight: dict[str, int] = {}
        self.ttft: dict[str, float] = {}  # deployment -> EWMA seconds to the first token (or the whole answer)
        self._turn = 0

    @property
    def active(self) -> bool:
        return bool(self._groups.deployments)

    # -- what the runner reports ------------------------------------------------------------------------
    def started(self, name: str) -> None:
        self.inflight[name] = self.inflight.get(name, 0) + 1

    def finished(self, name: str) -> None:
        left = self.inflight.get(name, 0) - 1
        if left > 0:
            self.inflight[name] = left
        else:
            self.inflight.pop(name, None)

    def measured(self, name: str, seconds: float) -> None:
        old = self.ttft.get(name)
        self.ttft[name] = seconds if old is None else old + ALPHA * (seconds - old)

    # -- selection ----------------------------------------------------------------------------------------
    def expand(self, route: Route) -> Route:
        """`route` with each provider-level target replaced by its deployments, in strategy order."""
        if not self._groups.deployments:
            return route
        strategy = route.strategy or self.strategy
        out: list[Target] = []
        seen: set[tuple[str, str]] = set()
        for target in route.targets:
            names = (target.deployment,) if target.deployment else self._groups.group(target.provider, target.model)
            for name in self.order(names, target.provider, target.model, strategy):
                key = (name, target.model)
                if key not in seen:  # Target(...) rather than dataclasses.replace: a third of the cost
                    seen.add(key)
                    out.append(Target(target.provider, target.model, target.timeout_s, target.retries, name))
        return Route(route.key, route.component, route.task_type, tuple(out), route.options, route.strategy)

    def order(self, names: tuple[str, ...] | list[str], kind: str, model: str, strategy: str) -> list[str]:
        if len(names) < 2:
            return list(names)
        self._turn += 1
        n = len(names)
        rotated = [names[(i + self._turn) % n] for i in range(n)]  # ties rotate
        inflight = self.inflight
        if strategy == "weighted":
            weights = [self._groups.weight(d) for d in rotated]
            first = self._rng.choices(rotated, weights)[0]
            rest = sorted((d for d in rotated if d != first), key=self._groups.weight, reverse=True)
            ordered = [first, *rest]
        elif strategy == "latency":
            if self._rng.random() < EXPLORE:
                self._rng.shuffle(rotated)
                ordered = rotated
            else:
                ordered = sorted(rotated, key=lambda d: self.ttft.get(d, 0.0))
        elif strategy == "cost":
            price = self._price

            def cost(d: str) -> tuple[float, int]:
                p = price(d, kind, model) if price is not None else None
                return (p if p is not None else float("inf"), inflight.get(d, 0))

            ordered = sorted(rotated, key=cost)
        else:  # least-inflight
            ordered = sorted(rotated, key=lambda d: inflight.get(d, 0))
        state = self._breaker.state
        return sorted(ordered, key=lambda d: state((d, model)) == "open")  # stable: open breakers last

    def snapshot(self) -> dict[str, dict[str, float]]:
        names = set(self.inflight) | set(self.ttft)
        return {d: {"in_flight": self.inflight.get(d, 0), "ttft_ewma_ms": round(self.ttft.get(d, 0.0) * 1000, 2)}
                for d in sorted(names)}


__all__ = ["Balancer", "Groups", "PriceOf"]
