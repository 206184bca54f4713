"""The usage API's time buckets, which the dashboard's traffic charts read: `group_by=minute|hour` (UTC) with
requests, errors, fallbacks and latency percentiles per bucket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rhetor.governance.ledger import UsageRecord
from rhetor.governance.sqlite_store import SqliteLedgerStore

# two full minutes ago, at the start of that minute: the records below fall in two known minutes
MINUTE = (int(time.time()) // 60 - 2) * 60


def rec(i: int, ts: float, *, status: str = "ok", fallback: bool = False, latency: float = 10.0) -> UsageRecord:
    return UsageRecord(ts=ts, request_id=f"b-{i}", key_id="anonymous", component="ergon", task_type="chat",
                       front="native", provider="simulated", model="simulated-fast",
                       attempts=[{"provider": "simulated", "model": "simulated-fast", "outcome": "ok"}],
                       input_tokens=10, output_tokens=5, cost_usd=0.001, latency_ms=latency, status=status,
                       fallback=fallback)


@pytest.fixture
def seeded(tmp_path: Path, make_settings: Callable[..., Any], rhetor: Any) -> Any:
    rows = [rec(i, MINUTE + 5 + i, latency=float(i + 1)) for i in range(4)]
    rows.append(rec(4, MINUTE + 30, status="upstream_timeout", fallback=True))
    rows += [rec(5 + i, MINUTE + 65 + i, fallback=True) for i in range(2)]

    async def write() -> None:
        store = SqliteLedgerStore(tmp_path / "usage.db")
        await store.open()
        await store.write(rows)
        await store.close()

    asyncio.run(write())
    with rhetor(make_settings()) as url:
        yield url


def test_group_by_minute_buckets_requests_errors_fallbacks(seeded: str) -> None:
    r = httpx.get(f"{seeded}/api/v1/usage", params={"from": "1h", "group_by": "minute"})
    assert r.status_code == 200, r.text
    buckets = r.json()["buckets"]
    first, second = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(MINUTE)), \
        time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(MINUTE + 60))
    assert [b["minute"] for b in buckets] == [first, second]
    assert [b["requests"] for b in buckets] == [5, 2]
    assert [b["errors"] for b in buckets] == [1, 0]
    assert [b["fallbacks"] for b in buckets] == [1, 2]
    assert buckets[0]["p50_latency_ms"] == 3.0 and buckets[0]["p95_latency_ms"] == 10.0
    assert r.json()["totals"]["fallbacks"] == 3


def test_group_by_hour_and_a_bad_group_names_the_parameter(seeded: str) -> None:
    r = httpx.get(f"{seeded}/api/v1/usage", params={"from": "3h", "group_by": "hour,component"})
    assert r.status_code == 200, r.text
    buckets = [b for b in r.json()["buckets"] if b["component"] == "ergon"]
    hours = {time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(t)) for t in (MINUTE, MINUTE + 60)}
    assert {b["hour"] for b in buckets} == hours  # one hour, or two when the minutes straddle one
    assert sum(b["requests"] for b in buckets) == 7
    bad = httpx.get(f"{seeded}/api/v1/usage", params={"group_by": "second"})
    assert bad.status_code == 400 and "group_by" in bad.text and "minute" in bad.text
