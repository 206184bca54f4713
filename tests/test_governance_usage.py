"""The usage API and CLI over a known ledger: totals and buckets by component/model/day, p50/p95, CSV, paging and
filters of recent records, 400s naming the bad parameter, and `python -m rhetor usage` printing a table."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rhetor.governance.ledger import UsageRecord
from rhetor.governance.sqlite_store import SqliteLedgerStore

NOW = time.time()


def rec(i: int, component: str, model: str, cost: float, latency: float, status: str = "ok",
        age_s: float = 60.0) -> UsageRecord:
    provider, _, name = model.partition("/")
    return UsageRecord(ts=NOW - age_s - i, request_id=f"r-{i}", key_id="anonymous", component=component,
                       task_type="chat", front="native", provider=provider, model=name,
                       attempts=[{"provider": provider, "model": name, "outcome": "ok"}], input_tokens=100,
                       output_tokens=10, cost_usd=cost, latency_ms=latency, status=status)


def seed(data_dir: Path) -> None:
    rows = [rec(i, "ergon", "anthropic/claude-sonnet-4-5", 0.01, latency=float(i + 1)) for i in range(10)]
    rows += [rec(10 + i, "terma", "openai/gpt-4o-mini", 0.001, latency=50.0) for i in range(4)]
    rows.append(rec(20, "terma", "openai/gpt-4o-mini", 0.0, latency=5.0, status="upstream_timeout"))
    rows.append(rec(21, "athena", "openai/gpt-4o", 1.0, latency=1.0, age_s=30 * 86400))  # outside 7 days

    async def write() -> None:
        store = SqliteLedgerStore(data_dir / "usage.db")
        await store.open()
        await store.write(rows)
        await store.close()

    asyncio.run(write())


@pytest.fixture
def seeded(tmp_path: Path, make_settings: Callable[..., Any], rhetor: Any) -> Any:
    seed(tmp_path)
    with rhetor(make_settings()) as url:
        yield url


def test_group_by_component_totals_and_percentiles(seeded: str) -> None:
    r = httpx.get(f"{seeded}/api/v1/usage", params={"group_by": "component"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totals"]["requests"] == 15 and body["totals"]["errors"] == 1  # the 30-day-old one is outside
    assert body["totals"]["cost_usd"] == pytest.approx(0.104)
    buckets = {b["component"]: b for b in body["buckets"]}
    assert set(buckets) == {"ergon", "terma"}
    ergon = buckets["ergon"]
    assert ergon["requests"] == 10 and ergon["input_tokens"] == 1000 and ergon["total_tokens"] == 1100
    assert ergon["p50_latency_ms"] == 5.0 and ergon["p95_latency_ms"] == 10.0  # nearest rank over 1..10
    assert buckets["terma"]["errors"] == 1 and buckets["terma"]["cost_usd"] == pytest.approx(0.004)
    wide = httpx.get(f"{seeded}/api/v1/usage", params={"from": "60d", "group_by": "model,day"}).json()
    models = {b["model"] for b in wide["buckets"]}
    assert models == {"anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini", "openai/gpt-4o"}
    assert all(len(b["day"]) == 10 for b in wide["buckets"]) and wide["totals"]["requests"] == 16


def test_csv_format(seeded: str) -> None:
    r = httpx.get(f"{seeded}/api/v1/usage", params={"group_by": "provider", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert {row["provider"]: int(row["requests"]) for row in rows} == {"anthropic": 10, "openai": 5}
    assert float(next(row for row in rows if row["provider"] == "openai")["cost_usd"]) == pytest.approx(0.004)


def test_recent_records_paged_and_filtered(seeded: str) -> None:
    page = httpx.get(f"{seeded}/api/v1/usage/requests", params={"limit": 4, "offset": 0}).json()
    assert page["total"] == 15 and len(page["records"]) == 4
    assert [r["request_id"] for r in page["records"]] == ["r-0", "r-1", "r-2", "r-3"]  # newest first
    nxt = httpx.get(f"{seeded}/api/v1/usage/requests", params={"limit": 4, "offset": 4}).json()
    assert nxt["records"][0]["request_id"] == "r-4"
    terma = httpx.get(f"{seeded}/api/v1/usage/requests", params={"component": "terma",
                                                                 "model": "openai/gpt-4o-mini"}).json()
    assert terma["total"] == 5
    failed = httpx.get(f"{seeded}/api/v1/usage/requests", params={"status": "upstream_timeout"}).json()
    assert [r["request_id"] for r in failed["records"]] == ["r-20"]


@pytest.mark.parametrize(("path", "params", "param"), [
    ("/api/v1/usage", {"group_by": "component,colour"}, "group_by"),
    ("/api/v1/usage", {"format": "xml"}, "format"),
    ("/api/v1/usage", {"from": "last tuesday"}, "from"),
    ("/api/v1/usage", {"from": "1d", "to": "2d"}, "to"),
    ("/api/v1/usage/requests", {"limit": "0"}, "limit"),
    ("/api/v1/usage/requests", {"offset": "x"}, "offset"),
])
def test_bad_parameters_are_400_naming_them(seeded: str, path: str, params: dict[str, str], param: str) -> None:
    r = httpx.get(f"{seeded}{path}", params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and param in r.json()["error"]["message"]


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "rhetor", "usage", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_cli_prints_a_table(tmp_path: Path) -> None:
    seed(tmp_path)
    r = run_cli(tmp_path, "--since", "7d", "--by", "component")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[:3] == ["component", "requests", "in"]
    ergon = next(line for line in lines if line.startswith("ergon"))
    assert ergon.split()[1:5] == ["10", "1000", "100", "0.1000"]
    assert lines[-1].split()[:2] == ["total", "15"]
    csv_out = run_cli(tmp_path, "--by", "model", "--format", "csv")
    assert csv_out.returncode == 0 and csv_out.stdout.startswith("model,requests,")
    bad = run_cli(tmp_path, "--by", "colour")
    assert bad.returncode == 2 and "--by" in bad.stderr and "colour" in bad.stderr


def test_cli_without_a_ledger_says_so(tmp_path: Path) -> None:
    r = run_cli(tmp_path)
    assert r.returncode == 0 and "no usage recorded yet" in r.stdout
    assert not (tmp_path / "usage.db").exists()
