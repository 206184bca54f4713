"""The store-protocol suite, continued: templates, the usage ledger, budgets, Responses ids, shared settings and
semantic memory (vectors, scopes, chunked scans, turns, lexical search), each run against the SQLite default and
PostgreSQL (tests/engines.py finds or starts a real server, or skips saying why)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from rhetor.context import NewMessage, SqliteContextStore
from rhetor.context.embedder import SimulatedEmbedder
from rhetor.context.responses import SqliteResponseIndex, StoredResponse
from rhetor.context.retrieval import Memory
from rhetor.errors import TemplateConflictError
from rhetor.governance.budget_store import SqliteBudgetStore
from rhetor.governance.budgets import parse_budget
from rhetor.governance.ledger import UsageFilter, UsageRecord
from rhetor.governance.sqlite_store import SqliteLedgerStore
from rhetor.prompts import TemplateStore
from rhetor.prompts.persist import TemplateDB

BACKENDS = ["sqlite", "postgres"]
pytestmark = pytest.mark.parametrize("backend_url", BACKENDS, indirect=True)


@pytest.fixture
def backend_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("pg_url") if request.param == "postgres" else None


def _db(url: str) -> Any:
    from rhetor.storage.postgres import Database

    return Database(url)


def make(kind: str, url: str | None, tmp: Path) -> Any:
    """A store of `kind` on the backend: SQLite files under `tmp`, or its own pool on PostgreSQL."""
    if url is None:
        files: dict[str, Any] = {"templates": TemplateDB, "ledger": SqliteLedgerStore, "budgets": SqliteBudgetStore,
                                 "responses": SqliteResponseIndex}
        return files[kind](tmp / f"{kind}.db")
    from rhetor.storage.pg_budgets import PostgresBudgetStore
    from rhetor.storage.pg_ledger import PostgresLedgerStore
    from rhetor.storage.pg_responses import PostgresResponseIndex
    from rhetor.storage.pg_templates import PostgresTemplateRows

    cls = {"templates": PostgresTemplateRows, "ledger": PostgresLedgerStore, "budgets": PostgresBudgetStore,
           "responses": PostgresResponseIndex}[kind]
    return cls(_db(url), owns=True)


@pytest.fixture
async def opened(backend_url: str | None, tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Any] = []

    async def open_(kind: str) -> Any:
        store = make(kind, backend_url, tmp_path)
        await store.open()
        made.append(store)
        return store

    yield open_
    for store in made:
        await store.close()


async def test_templates_versions_active_and_a_second_replica(opened: Any, backend_url: str | None,
                                                              tmp_path: Path) -> None:
    rows_a, rows_b = await opened("templates"), await opened("templates")
    a, b = TemplateStore(rows=rows_a), TemplateStore(rows=rows_b)
    await a.reload()
    await b.reload()
    await a.create("t.greet", text="Hello {{ name }}", variables={"name": {"type": "string"}})
    await a.put("t.greet", text="Hi {{ name }}!")
    await a.put("t.greet", active_version=1)
    assert not b.exists("t.greet")  # b serves from memory until told
    await b.reload()
    assert [v.version for v in b.versions("t.greet")] == [1, 2] and b.active_version("t.greet") == 1
    assert b.get("t.greet", 2).text == "Hi {{ name }}!" and b.get("t.greet").variables[0].name == "name"
    with pytest.raises(TemplateConflictError):  # b's in-memory number 3 raced a's: the store refuses, b re-reads
        await a.put("t.greet", text="three")
        await b.put("t.greet", text="also three")
    assert [v.version for v in b.versions("t.greet")] == [1, 2, 3]
    await a.delete("t.greet")
    await b.reload()
    assert not b.exists("t.greet")
    await a.pool.aclose()
    await b.pool.aclose()


def _usage(ts: float, **kw: Any) -> UsageRecord:
    base: dict[str, Any] = {"ts": ts, "request_id": "r", "key_id": "k1", "component": "ergon", "task_type": "chat",
                            "front": "native", "provider": "openai", "model": "gpt", "input_tokens": 10,
                            "output_tokens": 5, "cost_usd": 0.25, "latency_ms": 12.0}
    base.update(kw)
    return UsageRecord(**base)


async def test_ledger_write_summary_records_spend_and_purge(opened: Any) -> None:
    ledger = await opened("ledger")
    now = time.time()
    await ledger.write([_usage(now - 10), _usage(now - 5, component=None, status="upstream_error", latency_ms=30.0),
                        _usage(now - 4, provider="anthropic", model="claude", attempts=[{"provider": "openai"}],
                               fallback=True, cache_hit=True, saved_usd=0.1, downgraded_from="openai/gpt"),
                        _usage(now - 90 * 86400, key_id="old")])
    flt = UsageFilter(now - 3600, now + 1)
    summary = await ledger.summary(flt, ["component", "model"])
    assert summary["totals"]["requests"] == 3 and summary["totals"]["errors"] == 1
    assert summary["totals"]["cost_usd"] == 0.75 and summary["totals"]["p50_latency_ms"] == 12.0
    assert [(b["component"], b["model"], b["requests"]) for b in summary["buckets"]] == [
        (None, "openai/gpt", 1), ("ergon", "anthropic/claude", 1), ("ergon", "openai/gpt", 1)]  # NULLs first
    hours = await ledger.summary(flt, ["hour"])
    assert len(hours["buckets"]) in (1, 2) and hours["buckets"][0]["hour"].endswith(":00Z")
    day = (await ledger.summary(flt, ["day"]))["buckets"][-1]["day"]
    assert len(day) == 10 and day.count("-") == 2
    rows, total = await ledger.records(UsageFilter(now - 3600, now + 1, provider="anthropic"), limit=5, offset=0)
    assert total == 1 and rows[0].attempts == [{"provider": "openai"}] and rows[0].fallback and rows[0].cache_hit
    assert rows[0].downgraded_from == "openai/gpt" and rows[0].saved_usd == 0.1
    page, total = await ledger.records(flt, limit=2, offset=1)
    assert total == 3 and [r.ts for r in page] == [now - 5, now - 10]  # newest first
    spend = await ledger.spend("key_id", "k1", [now - 3600, now - 7], now)
    assert spend == [0.75, 45.0, 0.5, 30.0]
    assert await ledger.purge(now - 86400) == 1


async def test_budgets_save_load_replace_delete(opened: Any) -> None:
    store = await opened("budgets")
    await store.save(parse_budget({"id": "b1", "scope": "component", "target": "ergon", "daily_usd": 5}))
    await store.save(parse_budget({"id": "a0", "scope": "global", "monthly_usd": 100, "policy": "warn"}))
    await store.save(parse_budget({"id": "b1", "scope": "component", "target": "ergon", "daily_usd": 7}))
    loaded = await store.load()
    assert [b.id for b in loaded] == ["a0", "b1"] and loaded[1].daily_usd == 7
    assert await store.delete("b1") is True and await store.delete("b1") is False
    assert [b.id for b in await store.load()] == ["a0"]


async def test_responses_put_get_replace_delete(opened: Any) -> None:
    index = await opened("responses")
    first = StoredResponse("resp_1", "ergon:c", 2, {"id": "resp_1", "output": [{"x": "ü"}]}, [{"role": "user"}])
    await index.put(first)
    got = await index.get("resp_1")
    assert got == first and await index.get("resp_2") is None
    await index.put(StoredResponse("resp_1", "ergon:c", 4, {"id": "resp_1"}, []))
    assert (await index.get("resp_1")).message_count == 4
    assert await index.delete("resp_1") is True and await index.delete("resp_1") is False


async def test_shared_settings_round_trip(backend_url: str | None) -> None:
    if backend_url is None:
        pytest.skip("the embedded default keeps the legacy defaults in legacy_provider.json (rhetor.api.legacy)")
    from rhetor.storage.pg_settings import PostgresSettingStore

    store = PostgresSettingStore(_db(backend_url), owns=True)
    await store.open()
    try:
        assert await store.get("legacy_provider") is None
        await store.put("legacy_provider", {"provider": "anthropic", "model": "m"})
        await store.put("legacy_provider", {"provider": "openai", "model": "n"})
        assert await store.get("legacy_provider") == {"provider": "openai", "model": "n"}
    finally:
        await store.close()


# -- semantic memory ------------------------------------------------------------------------------------

async def _memory_backend(url: str | None, tmp: Path) -> tuple[Any, Any]:
    """(context store, MemoryStore-or-runner) on one backend."""
    if url is None:
        store = SqliteContextStore(tmp / "rhetor.db")
        await store.open()
        return store, store
    from rhetor.storage.pg_contexts import PostgresContextStore
    from rhetor.storage.pg_vectors import PostgresMemory

    db = _db(url)
    contexts = PostgresContextStore(db, owns=True)
    await contexts.open()
    return contexts, PostgresMemory(db)


async def test_memory_indexes_searches_scopes_and_turns(backend_url: str | None, tmp_path: Path) -> None:
    contexts, backend = await _memory_backend(backend_url, tmp_path)
    memory = Memory(backend, SimulatedEmbedder(), interval_s=0.05, cache_bytes=64 * (256 + 4 + 8))
    try:
        for t in range(40):  # ergon:long overflows the 64-vector scope: its oldest are found by the chunked scan
            await contexts.append_turn("ergon:long", [NewMessage("user", f"filler question {t} about staging"),
                                                      NewMessage("assistant", f"filler answer {t}")])
            if t == 3:
                await contexts.append_turn("ergon:long", [NewMessage("user", "Acme quarterly widgets invoice?"),
                                                          NewMessage("assistant", "The Acme widgets invoice is 42")])
        await contexts.append_turn("telos:other", [NewMessage("user", "telos talks about rollout"),
                                                   NewMessage("assistant", "a rollout plan")])
        await contexts.append_turn("ergon:long", [NewMessage("user", "failed turn Acme")], status="error")
        memory.start()
        assert memory.indexer is not None and memory.cache is not None
        await memory.indexer.drain(20)
        status = await memory.status()
        assert status["embedded"] == 85 and status["backlog"] == 0  # the errored turn is embedded too (never found)
        mode, hits = await memory.search("Acme quarterly widgets", context_id="ergon:long", k=2)
        assert mode == "semantic" and hits[0].content.startswith("Acme quarterly") and len(hits) == 2
        assert all(h.context_id == "ergon:long" and "failed" not in h.content for h in hits)
        scope = memory.cache.get("ergon:long")
        assert scope is not None and scope.floor > 0  # truncated to the budget, the old match found anyway
        _, component = await memory.search("rollout plan", component="TELOS", k=5)
        assert {h.context_id for h in component} == {"telos:other"}
        _, anywhere = await memory.search("Acme widgets invoice", k=3)
        assert anywhere[0].context_id == "ergon:long" and "Acme" in anywhere[0].content
        # a vector stored after the scope was cached is found on the next search
        await contexts.append_turn("ergon:long", [NewMessage("user", "zebra migration pipeline"),
                                                  NewMessage("assistant", "zebras migrate")])
        memory.notify()
        await memory.indexer.drain(10)
        _, fresh = await memory.search("zebra migration pipeline", context_id="ergon:long", k=1)
        assert fresh[0].content == "zebra migration pipeline"
        turns, more = await memory.store.recent_turns("ergon:long", 60)
        assert more and turns and turns[-1].messages[-1].content == "zebras migrate"
        whole = await memory.store.turns_of("ergon:long", [hits[0].id])
        assert [m.content for m in whole[0].messages] == ["Acme quarterly widgets invoice?",
                                                          "The Acme widgets invoice is 42"]
        lexical = await memory.store.lexical("quarterly invoices!", 3, context_id="ergon:long")
        assert lexical and "Acme" in lexical[0].content  # stemmed: invoices ~ invoice
        assert await memory.store.lexical("the and of", 3) == []  # nothing searchable: no query at all
        assert await memory.store.lexical("Acme", 5, component="telos") == []
    finally:
        await memory.stop()
        await contexts.close()


async def test_memory_lexical_window_without_an_embedder(backend_url: str | None, tmp_path: Path) -> None:
    contexts, backend = await _memory_backend(backend_url, tmp_path)
    memory = Memory(backend, None)
    try:
        await contexts.append_turn("ergon:w", [NewMessage("user", "remember the falcon codeword " + "x " * 200),
                                               NewMessage("assistant", "noted " + "y " * 200)])
        for t in range(30):
            await contexts.append_turn("ergon:w", [NewMessage("user", f"chatter {t} " + "z " * 100),
                                                   NewMessage("assistant", f"ok {t}")])
        history, recall = await memory.window("ergon:w", "what was the falcon codeword?", room_tokens=900,
                                              load_tokens=900)
        assert recall is not None and recall.mode == "lexical"
        assert history[0].content.startswith("remember the falcon") and history[-1].content == "ok 29"
        mode, hits = await memory.search("falcon", context_id="ergon:w", k=1)
        assert mode == "lexical" and hits[0].content.startswith("remember the falcon")
        await asyncio.sleep(0)
    finally:
        await memory.stop()
        await contexts.close()


async def test_a_replica_finds_vectors_another_replica_stored(backend_url: str | None, tmp_path: Path) -> None:
    """Replica A has the context's scope cached; replica B's indexer embeds a new turn: A's next search finds it
    (the scope reads the vectors newer than it holds). PostgreSQL only: SQLite mode is one machine's data dir."""
    if backend_url is None:
        pytest.skip("replicas share vectors on PostgreSQL only")
    contexts, backend_a = await _memory_backend(backend_url, tmp_path)
    _, backend_b = await _memory_backend(backend_url, tmp_path)
    a, b = Memory(backend_a, SimulatedEmbedder()), Memory(backend_b, SimulatedEmbedder(), interval_s=0.05)
    try:
        await contexts.append_turn("ergon:x", [NewMessage("user", "alpha beta"), NewMessage("assistant", "gamma")])
        b.start()
        assert b.indexer is not None and a.cache is not None
        await b.indexer.drain(10)
        assert (await a.search("alpha beta", context_id="ergon:x", k=1))[1][0].content == "alpha beta"
        assert a.cache.get("ergon:x") is not None  # cached on A now
        await contexts.append_turn("ergon:x", [NewMessage("user", "kestrel harbour"), NewMessage("assistant", "ok")])
        b.notify()
        await b.indexer.drain(10)
        _, hits = await a.search("kestrel harbour", context_id="ergon:x", k=1)
        assert hits[0].content == "kestrel harbour"
    finally:
        await a.stop()
        await b.stop()
        await backend_b.db.close()
        await contexts.close()
