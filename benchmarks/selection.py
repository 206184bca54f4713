"""Deployment selection overhead (issue 12 item 7): the p50 cost of the balancer turning a route's target into
its ordered deployments, per strategy, against the no-providers-file fast path, in one process and one run.
No network: the selection is pure and runs on the event-loop thread before any I/O.

    .venv/bin/python benchmarks/selection.py [--n 20000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from rhetor.providers import Providers
from rhetor.providers.deployments import parse_deployments
from rhetor.routing.balance import Balancer
from rhetor.routing.breaker import CircuitBreaker
from rhetor.routing.router import Route, Target
from rhetor.settings import Settings

MODEL = "gpt-5.4"


def p50_us(balancer: Balancer, route: Route, n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        balancer.expand(route)
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    args = ap.parse_args()
    with TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp))
        route = Route("default", None, "default", (Target("openai", MODEL), Target("simulated", "simulated-fast")), {})
        bare = Balancer(Providers(settings), CircuitBreaker(5, 30))
        print(f"no providers file (fast path): p50 {p50_us(bare, route, args.n):.2f} us")
        for count in (2, 4):
            deps = parse_deployments([{"name": f"oa-{i}", "kind": "openai", "api_key": "k", "models": [MODEL],
                                       "weight": i + 1, "prices": {"input": i + 1, "output": 1}}
                                      for i in range(count)])
            for strategy in ("least-inflight", "weighted", "latency", "cost"):
                balancer = Balancer(Providers(settings, deps), CircuitBreaker(5, 30), strategy=strategy,
                                    price=lambda d, k, m: float(d[-1]))
                print(f"{count} deployments, {strategy:15}: p50 {p50_us(balancer, route, args.n):.2f} us")


if __name__ == "__main__":
    main()
