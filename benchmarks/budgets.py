"""In-process cost of budgets and the response cache on the request path, in microseconds per request: the gate's
admission (no budget; a global and a component budget: estimate, check, reserve), the release and the record
that settles the real cost, and a cache lookup (key + get) — the min of several repeats, so a busy machine
inflates it less than an end-to-end run. Complements `run.py --off-env RHETOR_BUDGET_POLICY=ignore`.

    .venv/bin/python benchmarks/budgets.py [--n 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
import timeit
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rhetor.gateway import ChatInput, Gateway
from rhetor.governance.budgets import Budget, BudgetBook
from rhetor.governance.cache import MemoryCache
from rhetor.governance.gate import Gate, Notes
from rhetor.governance.ledger import UsageRecord
from rhetor.governance.prices import load_prices
from rhetor.providers import Providers
from rhetor.routing.config import TaskConfig
from rhetor.routing.router import Route, Target
from rhetor.settings import Settings
from rhetor.types import Message


@dataclass
class Prepared:
    route: Route
    system: str | None
    history: list[Message]
    new_turn: list[Message]
    inp: Any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    n = ap.parse_args().n
    prices = load_prices()
    config = TaskConfig.model_validate({"default": {"provider": "openai", "model": "gpt-4o-mini"}})
    settings = Settings()
    providers = Providers(settings)
    route = Route("default", "ergon", "default", (Target("openai", "gpt-4o-mini"),), {})
    turn = [Message("user", "hi there, a short question")]
    builder = Gateway._builder(None, Prepared(route, None, [], turn, ChatInput(message="hi")))  # type: ignore[arg-type]
    rec = UsageRecord(ts=time.time(), request_id="r", key_id="anonymous", component="ergon", task_type="default",
                      front="native", provider="openai", model="gpt-4o-mini", input_tokens=12, output_tokens=64,
                      cost_usd=0.00004)

    def gate_for(book: BudgetBook | None, cache: MemoryCache | None) -> Gate:
        return Gate(prices, config, book, cache)

    empty = gate_for(BudgetBook(), None)
    book = BudgetBook()
    book.put(Budget(id="global", daily_usd=1e6, monthly_usd=1e7))
    book.put(Budget(id="ergon", scope="component", target="ergon", daily_usd=1e6, policy="block"))
    budgeted = gate_for(book, None)
    cached = gate_for(BudgetBook(), MemoryCache())

    def one(gate: Gate, mode: str | None = None, record: BudgetBook | None = None) -> None:
        inp = ChatInput(message="hi")
        inp.notes = Notes(mode)  # type: ignore[arg-type]
        ticket = gate.admit(Prepared(route, None, [], turn, inp), builder, providers, None)
        if ticket is not None:
            ticket.release()
        if record is not None:
            record.record(rec)

    rows = [("no budget, no cache (the default)", lambda: one(empty)),
            ("global + component budget: admit, release, record", lambda: one(budgeted, record=book)),
            ("cache lookup (x-rhetor-cache: use, a miss)", lambda: one(cached, "use"))]
    base = min(timeit.repeat(lambda: Prepared(route, None, [], turn, ChatInput(message="hi")), number=n, repeat=5))
    for label, fn in rows:
        best = min(timeit.repeat(fn, number=n, repeat=5))
        print(f"{label:52} {1e6 * (best - base) / n:7.2f} us/request")


if __name__ == "__main__":
    main()
