"""The usage ledger through a real Rhetor: every front (native, legacy HTTP, both WebSocket protocols, OpenAI,
Anthropic, embeddings) writes exactly one record per request with the upstream's tokens and their list-price
cost; fallback, a cancelled stream (estimated tokens) and an unavailable store are recorded honestly; records
survive a SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from rhetor.governance.prices import load_prices
from rhetor.routing.config import TaskConfig
from rhetor.types import Usage
from tests.fakes.server import free_port
from tests.fakes.stack import running_stack

MODEL = {"provider_id": "openai", "model_id": "gpt-4o-mini"}
PRICES = load_prices()


def records(url: str, **params: Any) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/usage/requests", params={"limit": 1000, **params}, timeout=10)
    assert r.status_code == 200, r.text
    out: list[dict[str, Any]] = r.json()["records"]
    return out


def by_request(url: str, rid: str) -> dict[str, Any]:
    found = [r for r in records(url) if r["request_id"] == rid]
    assert len(found) == 1, (rid, found)
    return found[0]


def post(url: str, path: str, rid: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    r = httpx.post(f"{url}{path}", json=body, headers={"x-request-id": rid, **headers}, timeout=30)
    assert r.status_code == 200, r.text
    return r


def priced(rec: dict[str, Any]) -> float:
    usage = Usage(rec["input_tokens"], rec["output_tokens"], cached_input_tokens=rec["cached_tokens"])
    return PRICES.cost(rec["provider"], rec["model"], usage).usd


def test_every_front_writes_exactly_one_record_with_tokens_and_cost(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        url = stack.url
        replies: dict[str, Any] = {}
        replies["n-1"] = post(url, "/api/v1/chat", "n-1", {"message": "hello there", "component": "ergon", **MODEL})
        post(url, "/api/v1/chat/stream", "n-2", {"message": "hello stream", **MODEL})
        replies["l-1"] = post(url, "/message", "l-1", {"message": "legacy hi", "context_id": "terma:t1", **MODEL})
        post(url, "/stream", "l-2", {"message": "legacy stream", **MODEL})
        replies["o-1"] = post(url, "/v1/chat/completions", "o-1",
                              {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
                              **{"x-rhetor-component": "athena"})
        post(url, "/v1/chat/completions", "o-2", {"model": "openai/gpt-4o-mini", "stream": True,
                                                  "messages": [{"role": "user", "content": "hi"}]})
        replies["a-1"] = post(url, "/v1/messages", "a-1", {"model": "openai/gpt-4o-mini", "max_tokens": 50,
                                                           "messages": [{"role": "user", "content": "hi"}]})
        post(url, "/v1/messages", "a-2", {"model": "openai/gpt-4o-mini", "max_tokens": 50, "stream": True,
                                          "messages": [{"role": "user", "content": "hi"}]})
        replies["e-1"] = post(url, "/v1/embeddings", "e-1", {"model": "openai/text-embedding-3-small",
                                                             "input": ["one two three", "four"]})
        with connect(url.replace("http://", "ws://") + "/ws") as ws:
            ws.send(json.dumps({"type": "GENERATE", "request_id": "w-1", "prompt": "ws hi", **MODEL}))
            assert json.loads(ws.recv(timeout=10))["type"] == "RESPONSE"
            ws.send(json.dumps({"type": "STREAM", "request_id": "w-2", "prompt": "ws stream", **MODEL}))
            while not json.loads(ws.recv(timeout=10)).get("done"):
                pass
            ws.send(json.dumps({"type": "LLM_REQUEST", "payload": {"message": "envelope", "streaming": False,
                                                                   "context": "hephaestus", **MODEL}}))
            while json.loads(ws.recv(timeout=10))["type"] != "RESPONSE":
                pass
        time.sleep(0.2)  # the envelope's reply is sent before its record's stream of events is closed
        all_records = records(url)
        fronts = {"n": "native", "l": "legacy", "o": "openai", "a": "anthropic", "e": "embeddings", "w": "ws"}
        for rid in ("n-1", "n-2", "l-1", "l-2", "o-1", "o-2", "a-1", "a-2", "e-1", "w-1", "w-2"):
            rec = by_request(url, rid)
            assert rec["front"] == fronts[rid[0]], rec
            assert rec["status"] == "ok" and rec["key_id"] == "anonymous" and not rec["estimated"]
            assert rec["provider"] == "openai" and not rec["unpriced"]
            assert rec["input_tokens"] > 0 and rec["latency_ms"] > 0
            assert rec["cost_usd"] == pytest.approx(priced(rec)) and rec["cost_usd"] > 0
            if rid[0] != "e":
                assert rec["output_tokens"] > 0 and rec["model"] == "gpt-4o-mini"
        envelope = [r for r in all_records if r["front"] == "legacy_ws"]
        assert len(envelope) == 1 and envelope[0]["component"] == "hephaestus"
        assert len(all_records) == 12  # one per request, nothing more
        # tokens are the upstream's, as the replies reported them
        assert by_request(url, "n-1")["input_tokens"] == replies["n-1"].json()["usage"]["input_tokens"]
        assert by_request(url, "n-1")["component"] == "ergon"
        assert by_request(url, "l-1")["output_tokens"] == replies["l-1"].json()["usage"]["output_tokens"]
        assert by_request(url, "l-1")["component"] == "terma" and by_request(url, "l-1")["context_id"] == "terma:t1"
        assert by_request(url, "o-1")["input_tokens"] == replies["o-1"].json()["usage"]["prompt_tokens"]
        assert by_request(url, "o-1")["component"] == "athena"
        assert by_request(url, "a-1")["output_tokens"] == replies["a-1"].json()["usage"]["output_tokens"]
        assert by_request(url, "e-1")["input_tokens"] == replies["e-1"].json()["usage"]["prompt_tokens"]
        assert by_request(url, "n-2")["ttft_ms"] is not None
        assert by_request(url, "n-2")["ttft_ms"] <= by_request(url, "n-2")["latency_ms"]


def test_fallback_and_failure_are_recorded_once(make_settings: Callable[..., Any], rhetor: Any) -> None:
    cfg = TaskConfig.model_validate({"default": {"targets": [
        {"provider": "simulated", "model": "simulated-fail-500", "retries": 0},
        {"provider": "simulated", "model": "simulated-fast"}]},
        "broken": {"targets": [{"provider": "simulated", "model": "simulated-fail-400", "retries": 0}]}})
    with rhetor(make_settings(), cfg) as url:
        r = post(url, "/api/v1/chat", "fb-1", {"message": "hi"})
        assert r.json()["fallback"] is True
        failed = httpx.post(f"{url}/api/v1/chat", json={"message": "hi", "task_type": "broken"},
                            headers={"x-request-id": "fb-2"}, timeout=30)
        assert failed.status_code >= 400
        rec = by_request(url, "fb-1")
        assert rec["fallback"] is True and rec["status"] == "ok" and rec["model"] == "simulated-fast"
        assert [(a["model"], a["outcome"]) for a in rec["attempts"]] == [("simulated-fail-500", "error"),
                                                                          ("simulated-fast", "ok")]
        bad = by_request(url, "fb-2")
        assert bad["status"] not in ("ok", "cancelled") and bad["output_tokens"] == 0 and bad["cost_usd"] == 0
        assert len(records(url)) == 2


def test_cancelled_stream_is_recorded_with_estimated_tokens(make_settings: Callable[..., Any], rhetor: Any) -> None:
    with rhetor(make_settings(simulated_delay_scale=1.0)) as url:
        with connect(url.replace("http://", "ws://") + "/ws") as ws:
            ws.send(json.dumps({"type": "STREAM", "request_id": "c-1", "prompt": "tell me a long story",
                                "provider_id": "simulated", "model_id": "simulated-advanced"}))
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "CHUNK" and not first["done"]
            ws.send(json.dumps({"type": "CANCEL", "request_id": "c-1"}))
            while not json.loads(ws.recv(timeout=10)).get("done"):
                pass
        deadline = time.monotonic() + 5
        while not [r for r in records(url) if r["request_id"] == "c-1"] and time.monotonic() < deadline:
            time.sleep(0.05)
        rec = by_request(url, "c-1")
        assert rec["status"] == "cancelled" and rec["estimated"] is True
        assert rec["input_tokens"] > 0 and rec["output_tokens"] > 0  # what had streamed before the cancel
        assert rec["front"] == "ws" and rec["ttft_ms"] is not None


def test_unavailable_store_never_fails_a_request(make_settings: Callable[..., Any], rhetor: Any,
                                                tmp_path: Path) -> None:
    (tmp_path / "usage.db").mkdir()  # a directory where the database file should be: the store cannot open
    with rhetor(make_settings(usage_buffer_max=3)) as url:
        for i in range(5):
            r = httpx.post(f"{url}/api/v1/chat", json={"message": f"hi {i}"}, timeout=10)
            assert r.status_code == 200 and r.json()["content"]
        r = httpx.post(f"{url}/v1/chat/completions", json={"model": "simulated/simulated-fast",
                                                           "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 200
        detail = httpx.get(f"{url}/health").json()["details"]["usage_ledger"]
        assert detail["state"] == "degraded" and "usage store" in detail["error"]
        assert detail["buffered"] == 3 and detail["dropped"] == 3  # bounded: the oldest go first, counted
        usage = httpx.get(f"{url}/api/v1/usage")
        assert usage.status_code == 503 and usage.json()["error"]["type"] == "usage_unavailable"


def test_ledger_off_records_nothing(make_settings: Callable[..., Any], rhetor: Any, tmp_path: Path) -> None:
    with rhetor(make_settings(usage_ledger=False)) as url:
        assert httpx.post(f"{url}/api/v1/chat", json={"message": "hi"}).status_code == 200
        assert httpx.get(f"{url}/api/v1/usage").status_code == 503
        assert httpx.get(f"{url}/health").json()["details"]["usage_ledger"]["state"] == "disabled"
    assert not (tmp_path / "usage.db").exists()


def test_sigterm_flushes_buffered_records(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "RHETOR_DATA_DIR": str(tmp_path), "RHETOR_SIMULATED_DELAY_SCALE": "0",
           "RHETOR_PORT": str(port), "RHETOR_USAGE_FLUSH_S": "60", "RHETOR_HERMES": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        for i in range(3):
            assert httpx.post(f"{url}/api/v1/chat", json={"message": f"hi {i}"}, timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    rows = sqlite3.connect(tmp_path / "usage.db").execute("SELECT front, status FROM usage_records").fetchall()
    assert rows == [("native", "ok")] * 3  # flushed at shutdown although the flush interval is 60 s


async def test_close_never_cancels_a_batch_half_written(tmp_path: Path) -> None:
    """A graceful stop while the background flush is writing: the batch is stored, not dropped between the buffer
    and the store (found by tests/test_scale_restart.py on PostgreSQL, where a write takes a round trip)."""
    import asyncio
    from collections.abc import Sequence

    from rhetor.governance.ledger import Ledger, UsageFilter, UsageRecord
    from rhetor.governance.sqlite_store import SqliteLedgerStore

    class SlowStore(SqliteLedgerStore):  # the real store, its writes a network round trip slower
        async def write(self, records: Sequence[UsageRecord]) -> None:
            writing.set()
            await asyncio.sleep(0.2)
            await super().write(records)

    writing = asyncio.Event()
    store = SlowStore(tmp_path / "usage.db")
    ledger = Ledger(store, flush_interval_s=0.01)
    await ledger.start()
    for i in range(5):
        ledger.record(UsageRecord(ts=time.time(), request_id=f"r-{i}", key_id="anonymous", component=None,
                                  task_type=None, front="native", provider="simulated", model="simulated-fast"))
    await asyncio.wait_for(writing.wait(), 5)
    await ledger.close()  # mid-write
    reader = SqliteLedgerStore(tmp_path / "usage.db")
    await reader.open()
    try:
        _, total = await reader.records(UsageFilter(0, time.time() + 60), limit=10, offset=0)
    finally:
        await reader.close()
    assert total == 5
