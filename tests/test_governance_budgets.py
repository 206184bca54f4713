"""Budgets through a real Rhetor (simulated provider priced by a RHETOR_PRICES file, so every answer costs money):
warn, downgrade and block on every front in that front's own shape (native, legacy HTTP, OpenAI and Anthropic
through their SDKs, both WebSocket protocols), concurrent requests held to the in-flight overshoot, the original
RHETOR_BUDGET_* variables and /api/v1/budget shape, spend surviving a restart, and 400s naming the field."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from websockets.sync.client import connect

from rhetor.errors import BudgetExceededError, InvalidRequestError
from rhetor.governance.budgets import GLOBAL, Budget, BudgetBook, MemorySpend, parse_budget
from rhetor.governance.ledger import UsageRecord
from rhetor.settings import Settings
from tests.conftest import running_rhetor
from tests.conftest import test_settings as base_settings

PRICE = {"simulated": {"*": {"input": 1000.0, "output": 1000.0}}}  # $0.001 a token: a reply costs ~$0.1-0.3


def settings(tmp_path: Path, **kw: Any) -> Settings:
    tmp_path.mkdir(parents=True, exist_ok=True)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICE))
    return base_settings(tmp_path, prices_file=prices, usage_flush_interval_s=0.1, **kw)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with running_rhetor(settings(tmp_path)) as url:
        yield url


def put(url: str, budget_id: str, **body: Any) -> dict[str, Any]:
    r = httpx.put(f"{url}/api/v1/budgets/{budget_id}", json=body, timeout=10)
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = r.json()
    return out


def chat(url: str, path: str = "/api/v1/chat", **body: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json={"message": "hello there", **body}, timeout=30)


def ws_frames(url: str, frames: list[dict[str, Any]], until: int) -> list[dict[str, Any]]:
    """Send `frames`, collect replies until `until` final ones (RESPONSE, ERROR, or a chunk with done)."""
    out: list[dict[str, Any]] = []
    with connect(url.replace("http://", "ws://") + "/ws") as ws:
        for f in frames:
            ws.send(json.dumps(f))
        finals = 0
        while finals < until:
            frame = json.loads(ws.recv(timeout=20))
            out.append(frame)
            payload = frame.get("payload", frame)
            if frame["type"] in ("RESPONSE", "ERROR") or (payload.get("done") and "chunk" in payload):
                finals += 1
    return out


def test_warn_on_every_front_body_and_header(served: str) -> None:
    url = served
    put(url, "ergon-soft", scope="component", target="ergon", daily_usd=0.01, policy="warn")
    assert chat(url, component="ergon").status_code == 200  # spends past the limit: the next ones are warned
    r = chat(url, component="ergon")
    assert r.status_code == 200 and "ergon-soft" in r.json()["budget_warnings"][0]
    assert "ergon-soft" in r.headers["x-rhetor-budget-warning"] and "resets at" in r.headers["x-rhetor-budget-warning"]
    r = chat(url, "/message", context_id="ergon")  # legacy: a bare id names the component
    assert r.status_code == 200 and r.json()["budget_warnings"] and r.headers["x-rhetor-budget-warning"]
    r = httpx.post(f"{url}/api/v1/chat/stream", json={"message": "hi", "component": "ergon"}, timeout=30)
    final = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")][-1]
    assert final["done"] and final["budget_warnings"] and r.headers["x-rhetor-budget-warning"]
    oa = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0,
                       default_headers={"x-rhetor-component": "ergon"})
    raw = oa.chat.completions.with_raw_response.create(model="simulated/simulated-fast",
                                                       messages=[{"role": "user", "content": "hi"}])
    assert "ergon-soft" in raw.headers["x-rhetor-budget-warning"]
    an = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, default_headers={"x-rhetor-component": "ergon"})
    araw = an.messages.with_raw_response.create(model="simulated/simulated-fast", max_tokens=50,
                                                messages=[{"role": "user", "content": "hi"}])
    assert "ergon-soft" in araw.headers["x-rhetor-budget-warning"]
    frames = ws_frames(url, [{"type": "GENERATE", "request_id": "g1", "prompt": "hi", "component": "ergon"},
                             {"type": "LLM_REQUEST", "source": "terma", "payload": {"message": "hi", "context": "ergon",
                                                                                     "streaming": False}}], 2)
    finals = [f.get("payload", f) for f in frames if f["type"] == "RESPONSE"]
    assert len(finals) == 2 and all("ergon-soft" in f["budget_warnings"][0] for f in finals)


def test_soft_threshold_warns_before_the_limit(served: str) -> None:
    url = served
    put(url, "g", daily_usd=1000.0, daily_tokens=10**9, warn_at=0.00001, policy="block")
    assert "budget_warnings" not in chat(url).json()  # nothing spent yet
    r = chat(url)
    assert r.status_code == 200 and "at 0%" in r.json()["budget_warnings"][0]  # past 0.001%: warned, not blocked


def test_block_in_each_fronts_shape(served: str) -> None:
    url = served
    put(url, "cap", daily_usd=0.0, policy="block")  # spent: every request is refused before any upstream call
    r = chat(url)
    err = r.json()["error"]
    assert r.status_code == 429 and err["type"] == "budget_exceeded" and err["budget"] == "cap"
    assert "limit $0.0000" in err["message"] and "resets at" in err["message"] and err["resets_at"].endswith("Z")
    r = chat(url, "/message")
    assert r.status_code == 429 and "cap" in r.json()["error"] and r.json()["error_type"] == "budget_exceeded"
    r = httpx.post(f"{url}/stream", json={"message": "hi"}, timeout=10)
    assert r.status_code == 429 and "budget 'cap'" in r.json()["error"]
    oa = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.RateLimitError) as oe:
        oa.chat.completions.create(model="simulated/simulated-fast", messages=[{"role": "user", "content": "hi"}])
    assert oe.value.code == "insufficient_quota" and oe.value.type == "budget_exceeded"
    assert oe.value.response.headers["x-should-retry"] == "false" and "budget 'cap'" in oe.value.message
    an = anthropic.Anthropic(base_url=url, api_key="x", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as ae:
        an.messages.create(model="simulated/simulated-fast", max_tokens=20, stream=True,
                           messages=[{"role": "user", "content": "hi"}])
    assert ae.value.body["error"]["type"] == "rate_limit_error" and "budget 'cap'" in ae.value.message  # type: ignore[index,call-overload]
    frames = ws_frames(url, [{"type": "STREAM", "request_id": "s1", "prompt": "hi"},
                             {"type": "LLM_REQUEST", "source": "terma", "payload": {"message": "hi"}}], 2)
    errors = [f.get("payload", f) for f in frames if f["type"] == "ERROR"]
    assert len(errors) == 2 and all(e["error_type"] == "budget_exceeded" and "cap" in e["error"] for e in errors)
    rows = httpx.get(f"{url}/api/v1/usage/requests", params={"status": "budget_exceeded"}, timeout=10).json()
    assert rows["total"] == 7  # every refusal is in the ledger, at no cost
    assert all(rec["cost_usd"] == 0 for rec in rows["records"])


def test_downgrade_routes_to_the_cheaper_target_and_says_so(served: str) -> None:
    url = served
    put(url, "team", scope="task", target="code", daily_usd=0.0, policy="downgrade",
        downgrade_to="simulated/simulated-fast")
    r = chat(url, task_type="code", provider_id="simulated", model_id="simulated-advanced", request_id="x")
    body = r.json()
    assert r.status_code == 200 and body["model"] == "simulated-fast"
    assert body["downgraded"] == {"from": "simulated/simulated-advanced", "to": "simulated/simulated-fast",
                                  "budget": "team"}
    assert r.headers["x-rhetor-budget-downgrade"].startswith("simulated/simulated-advanced -> simulated/simulated-fast")
    oa = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, default_headers={"x-rhetor-task": "code"})
    raw = oa.chat.completions.with_raw_response.create(model="simulated/simulated-advanced",
                                                       messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().model == "simulated/simulated-fast" and raw.headers["x-rhetor-budget-downgrade"]
    frames = ws_frames(url, [{"type": "GENERATE", "request_id": "d", "prompt": "hi", "task_type": "code",
                              "provider_id": "simulated", "model_id": "simulated-advanced"}], 1)
    assert frames[-1]["model"] == "simulated-fast" and frames[-1]["downgraded"]["budget"] == "team"
    recs = httpx.get(f"{url}/api/v1/usage/requests", params={"task": "code"}, timeout=10).json()["records"]
    assert len(recs) == 3 and all(x["downgraded_from"] == "simulated/simulated-advanced" and
                                  x["model"] == "simulated-fast" for x in recs)


def test_concurrent_requests_overshoot_a_block_budget_by_at_most_those_in_flight(tmp_path: Path) -> None:
    # Each request reserves ~$0.27 (its input + 256 output tokens at $0.001) against a $0.5 limit: two fit in
    # flight; without the reservation all 12 would pass the check before the first one ended.
    with running_rhetor(settings(tmp_path, simulated_delay_scale=0.3)) as url:
        put(url, "tight", daily_usd=0.5, policy="block")

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                replies = await asyncio.gather(*[client.post(f"{url}/api/v1/chat", json={"message": "hello there"})
                                                 for _ in range(12)])
            return [r.status_code for r in replies]

        codes = asyncio.run(burst())
        assert sorted(set(codes)) == [200, 429] and codes.count(200) <= 2
        status = httpx.get(f"{url}/api/v1/budgets/tight", timeout=10).json()["periods"]["daily"]
        assert status["in_flight_usd"] == 0 and status["spent_usd"] > 0  # reservations settled with real costs
        assert status["spent_usd"] < 0.5  # real costs (~$0.06 each) are below the estimates held


def test_original_variables_and_shape_and_spend_survive_a_restart(tmp_path: Path) -> None:
    env = {"RHETOR_BUDGET_POLICY": "BLOCK", "RHETOR_BUDGET_DAILY_LIMIT": "0.05", "RHETOR_BUDGET_MONTHLY_LIMIT": "100"}
    base = settings(tmp_path)
    s = Settings.from_env(env, **{k: v for k, v in base.model_dump().items()
                                  if v is not None and not k.startswith("budget_")})
    with running_rhetor(s) as url:
        assert chat(url).status_code == 200  # spends past the daily limit
        assert chat(url).status_code == 429
        b = httpx.get(f"{url}/api/v1/budget", timeout=10).json()
        assert b["limits"] == {"daily": 0.05, "weekly": None, "monthly": 100.0}
        assert b["policies"]["daily"] == "block" and b["usage"]["daily"]["cost"] > 0.05 and b["budget_id"] == "global"
        assert httpx.get(f"{url}/budget", timeout=10).json()["limits"]["daily"] == 0.05  # R1's own path
    with running_rhetor(s) as url:  # a restart remembers the day's spend (seeded from usage.db)
        r = chat(url)
        assert r.status_code == 429 and r.json()["error"]["spent_usd"] > 0.05


def test_bad_definitions_are_400_naming_the_field(served: str) -> None:
    url = served
    cases = [({"daily_usd": -1}, "daily_usd"), ({"scope": "component", "daily_usd": 1}, "target"),
             ({"policy": "downgrade", "daily_usd": 1}, "downgrade_to"), ({"colour": 1, "daily_usd": 1}, "colour"),
             ({}, "daily_usd"), ({"daily_usd": 1, "policy": "panic"}, "policy"), ({"daily_usd": "lots"}, "daily_usd"),
             ({"daily_usd": 1, "downgrade_to": "haiku", "policy": "downgrade"}, "downgrade_to")]
    for body, field in cases:
        r = httpx.put(f"{url}/api/v1/budgets/b1", json=body, timeout=10)
        assert r.status_code == 400 and r.json()["error"]["param"] == field, (body, r.text)
        assert field in r.json()["error"]["message"]
    r = httpx.put(f"{url}/api/v1/budgets/b1", content=b"{nope", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    assert httpx.delete(f"{url}/api/v1/budgets/none", timeout=10).status_code == 404
    assert httpx.get(f"{url}/api/v1/budgets/none", timeout=10).status_code == 404
    r = httpx.post(f"{url}/api/v1/budgets", json={"id": "bad id!", "daily_usd": 1}, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "id"
    assert chat(url).status_code == 200  # nothing of this touched chat


def test_budgets_crud_and_admin_key(tmp_path: Path) -> None:
    with running_rhetor(settings(tmp_path)) as url:
        assert put(url, "a", daily_usd=1)["periods"]["daily"]["limit_usd"] == 1
        assert httpx.put(f"{url}/api/v1/budgets/a", json={"weekly_usd": 2}, timeout=10).status_code == 200
        listed = httpx.get(f"{url}/api/v1/budgets", timeout=10).json()["budgets"]
        assert [b["id"] for b in listed] == ["a"] and "daily" not in listed[0]["periods"]
        assert httpx.delete(f"{url}/api/v1/budgets/a", timeout=10).json() == {"deleted": True, "id": "a"}
    if "admin_key" not in Settings.model_fields:
        return
    with running_rhetor(settings(tmp_path / "admin", admin_key="adm-secret")) as url:
        r = httpx.put(f"{url}/api/v1/budgets/a", json={"daily_usd": 1}, timeout=10)
        assert r.status_code == 401
        r = httpx.put(f"{url}/api/v1/budgets/a", json={"daily_usd": 1}, headers={"x-api-key": "adm-secret"}, timeout=10)
        assert r.status_code == 201


def test_book_reserves_and_settles_without_a_server() -> None:
    book = BudgetBook()
    book.put(Budget(id="k", scope="key", target="key_1", daily_tokens=100, policy="block"))
    applicable = book.applicable(None, "key_1", None)
    first = book.admit(applicable, 0.0, 60)
    second = book.admit(applicable, 0.0, 60)  # 60 held < 100: admitted; now 120 held
    with pytest.raises(BudgetExceededError):
        book.admit(applicable, 0.0, 60)
    assert first.hold is not None and second.hold is not None
    first.hold.release()
    second.hold.release()
    assert book.admit(applicable, 0.0, 60).hold is not None
    with pytest.raises(InvalidRequestError):
        parse_budget({"id": "x", "scope": "global", "target": "y", "daily_usd": 1})


def test_a_reservation_never_released_is_freed_when_dropped() -> None:
    book = BudgetBook()
    book.put(Budget(id="g", daily_tokens=100, policy="block"))
    applicable = book.applicable(None, None, None)
    book.admit(applicable, 0.0, 90)  # a stream whose body was never read: its ticket is dropped, not released
    assert book.admit(applicable, 0.0, 90).hold is not None  # the dropped reservation no longer holds the budget


def test_only_block_and_downgrade_budgets_hold_an_estimate() -> None:
    book = BudgetBook()
    book.put(Budget(id="w", daily_tokens=100, policy="warn"))
    applicable = book.applicable(None, None, None)
    assert book.admit(applicable, 0.0, 90).hold is None  # a warn budget only speaks: nothing reserved ...
    assert not book.admit(applicable, 0.0, 90).warnings  # ... so requests in flight do not warn the next one
    book.put(Budget(id="d", daily_tokens=1000, policy="downgrade", downgrade_to="openai/gpt-5.4-nano"))
    applicable = book.applicable(None, None, None)
    held = book.admit(applicable, 0.0, 90)  # the downgrade budget holds its window, which the warn budget shares
    assert held.hold is not None and book.counters.window(GLOBAL, "daily", time.time()).held_tokens == 90
    assert "budget 'w'" in book.admit(applicable, 0.0, 90).warnings[0]  # 90 held + 90 held >= 80% of 100


def test_speaking_is_none_only_when_judge_would_say_and_hold_nothing() -> None:
    """The gate's first call (`speaking`) against `judge` itself, through a warn budget's life: no window yet,
    quiet, at the soft threshold, over the limit; a key budget on its own spend; a block budget always holds."""
    book = BudgetBook()
    assert book.speaking(None, None, None) is None  # no budget at all
    book.put(Budget(id="w", daily_usd=1.0, warn_at=0.8, policy="warn"))
    book.put(Budget(id="k", scope="key", target="key_1", daily_tokens=100, policy="warn"))

    def agree(key_id: str | None) -> bool:
        found = book.speaking(None, key_id, None)
        result, hold = book.judge(book.applicable(None, key_id, None), 0.0, 0)
        assert hold is None
        assert found is None or found is book.applicable(None, key_id, None)
        if found is None:  # silence is promised only where judge is silent
            assert result is None
        return found is not None

    assert agree(None) and agree("key_1")  # their windows not made yet: judge makes them
    assert not agree(None) and not agree("key_1")  # quiet: no call of judge needed
    book.record(UsageRecord(ts=time.time(), request_id=None, key_id="key_1", component=None, task_type=None,
                            front="openai", provider="openai", model="m", input_tokens=50, output_tokens=35,
                            cost_usd=0.5))
    assert not agree(None) and agree("key_1")  # the key's 85 tokens: past 80% of its 100
    book.record(UsageRecord(ts=time.time(), request_id=None, key_id="key_2", component=None, task_type=None,
                            front="openai", provider="openai", model="m", cost_usd=0.35))
    assert agree(None)  # $0.85 of $1: the global budget speaks (a soft warning)
    assert "budget 'w'" in book.judge(book.applicable(None, None, None), 0.0, 0)[0].warnings[0]  # type: ignore[union-attr]
    book.put(Budget(id="b", scope="task", target="t", daily_usd=100.0, policy="block"))
    found = book.speaking(None, None, "t")
    assert found is not None and found.holds  # a block budget holds an estimate on every request


def test_spend_counts_in_the_period_a_request_started_in() -> None:
    t0 = datetime(2026, 6, 17, 12, tzinfo=UTC).timestamp()  # a Wednesday, mid-month
    spend = MemorySpend()
    day, week, month = (spend.window(GLOBAL, p, t0) for p in ("daily", "weekly", "monthly"))
    for _ in range(2):
        assert spend.add((None, "key_1", None), t0, 1.0, 10) == (GLOBAL,)  # the key is not tracked
    assert (day.usd, week.usd, month.usd, month.tokens) == (2.0, 2.0, 2.0, 20)
    today = spend.window(GLOBAL, "daily", t0 + 86400)  # the next day: a new daily window
    spend.add((None, None, None), t0 + 3600, 1.0, 10)  # started yesterday: not today's spend
    assert (today.usd, week.usd, month.usd) == (0.0, 3.0, 3.0)
    spend.add((None, None, None), t0 + 86400, 1.0, 10)
    assert (today.usd, week.usd, month.usd, day.usd) == (1.0, 4.0, 4.0, 2.0)
