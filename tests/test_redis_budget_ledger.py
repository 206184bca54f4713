"""Budgets without Redis, several processes on one usage ledger (`--workers N`, or replicas on a PostgreSQL
ledger): each re-reads the spend the others wrote, so one global budget holds to within the re-read lag."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rhetor.errors import BudgetExceededError
from rhetor.governance.budgets import GLOBAL, parse_budget
from rhetor.governance.ledger import Ledger, UsageRecord
from rhetor.governance.prices import load_prices
from rhetor.governance.spending import Spending
from rhetor.governance.sqlite_store import SqliteLedgerStore
from rhetor.settings import Settings


def _record(cost: float) -> UsageRecord:
    return UsageRecord(ts=time.time(), request_id=None, key_id="anonymous", component=None, task_type=None,
                       front="native", provider="openai", model="gpt-4o", cost_usd=cost, input_tokens=10)


async def test_workers_sharing_one_ledger_see_each_others_spend(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, workers=2)
    budget = parse_budget({"id": "g", "daily_usd": 1.0, "policy": "block"})
    workers = []
    for _ in range(2):  # two processes' worth of parts on one data dir
        ledger = Ledger(SqliteLedgerStore(tmp_path / "usage.db"), flush_interval_s=0.05)
        await ledger.start()
        spending = Spending(settings, load_prices())
        spending.ledger = ledger
        spending.book.put(budget)
        workers.append((spending, ledger))
    (one, ledger_one), (two, ledger_two) = workers
    ledger_one.record(_record(0.7))  # worker one spends 0.7 ...
    one.book.record(_record(0.7))
    await ledger_one.flush()
    applicable = two.book.applicable(None, None, None)
    assert two.book.admit(applicable, 0.0, 0).hold is not None  # ... which worker two does not know yet
    await two.resync()  # (every RESYNC_S while serving)
    assert two.book.counters.window(GLOBAL, "daily", time.time()).usd == pytest.approx(0.7)
    ledger_two.record(_record(0.4))  # worker two spends 0.4: the budget is crossed across both
    two.book.record(_record(0.4))
    await ledger_two.flush()
    await one.resync()  # its own 0.7 is not counted twice: the larger of its count and the ledger's
    assert one.book.counters.window(GLOBAL, "daily", time.time()).usd == pytest.approx(1.1)
    with pytest.raises(BudgetExceededError):
        one.book.admit(one.book.applicable(None, None, None), 0.0, 0)
    for spending, ledger in workers:
        await spending.close()
        await ledger.close()
