"""Memory stays flat as conversations accumulate: vectors are read per scope with a bounded LRU cache (never
all in RAM), a reply reads only the stored turns that fit its window, and searches over a truncated scope,
a component or everything still find the best match."""

from __future__ import annotations

import sqlite3
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from rhetor.context import NewMessage, SqliteContextStore
from rhetor.context.embedder import SimulatedEmbedder, embed_hashed
from rhetor.context.int8 import dequantize, quantize
from rhetor.context.retrieval import Memory
from rhetor.context.scopes import Scope, row_bytes, search_rows
from rhetor.context.tail import recent_turns
from rhetor.context.vectors import ScopeCache
from rhetor.gateway import ChatInput, Gateway
from rhetor.providers import Providers
from rhetor.routing.config import load_config
from rhetor.settings import Settings

MODEL = SimulatedEmbedder.name
ROW = 256 + 4 + 8  # bytes of one cached vector: 256 int8 codes, its float32 scale and its int64 id
WORDS = "deploy pipeline migration rollout staging cluster latency budget invoice ticket schedule review".split()


def _bulk(conn: sqlite3.Connection, sizes: dict[str, int], *, words: int = 12) -> None:
    """Store `sizes[context]` messages per context (user/assistant turns) with their simulated vectors, in
    one transaction: thousands of messages in well under a second."""
    rng = np.random.default_rng(7)
    conn.execute("BEGIN IMMEDIATE")
    for cid, n in sizes.items():
        conn.execute("INSERT OR IGNORE INTO contexts (id, created_at, updated_at) VALUES (?, 'now', 'now')", (cid,))
        texts = [" ".join(rng.choice(WORDS, size=words)) for _ in range(n)]
        for i, text in enumerate(texts):
            cur = conn.execute("INSERT INTO messages (context_id, turn, role, content, status, timestamp) "
                               "VALUES (?, ?, ?, ?, 'complete', 'now')",
                               (cid, i // 2 + 1, "user" if i % 2 == 0 else "assistant", text))
            conn.execute("INSERT INTO message_vectors (message_id, model, dim, vector) VALUES (?, ?, 256, ?)",
                         (cur.lastrowid, MODEL, embed_hashed([text])[0].tobytes()))
    conn.execute("COMMIT")


async def _open(path: Path) -> SqliteContextStore:
    store = SqliteContextStore(path)
    await store.open()
    return store


async def test_resident_memory_does_not_grow_with_stored_vectors(tmp_path: Path) -> None:
    store = await _open(tmp_path / "r.db")
    contexts = {f"ergon:ctx-{c}": 250 for c in range(40)}  # 10,000 messages: 10 MB of vectors
    await store.run(lambda c: _bulk(c, contexts))
    budget = 256 * 1024
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        memory = Memory(store, SimulatedEmbedder(), cache_bytes=budget)
        memory.start()
        assert memory.indexer is not None and memory.cache is not None
        await memory.indexer.drain(30)
        for cid in contexts:  # every context searched once: the cache keeps only the most recent
            mode, hits = await memory.search("rollout budget", context_id=cid, k=3)
            assert mode == "semantic" and {h.context_id for h in hits} == {cid}
        _, everywhere = await memory.search("rollout budget", k=5)
        _, component = await memory.search("rollout budget", component="ergon", k=5)
        held = tracemalloc.get_traced_memory()[0] - before
        stats = memory.cache.stats()
    finally:
        tracemalloc.stop()
        await memory.stop()
        await store.close()
    assert len(everywhere) == len(component) == 5
    assert stats["bytes"] <= budget and 0 < stats["scopes"] < len(contexts)  # least recently used went
    assert held < 2 * 2**20, f"{held / 2**20:.1f} MiB held for 10 MB of stored vectors"


async def test_a_reply_reads_the_window_not_the_history(make_settings: Callable[..., Settings]) -> None:
    """SQLite VM steps of one chat turn: a 400-message and a 6,000-message context cost about the same (both
    overflow the simulated model's 8k window, so both read one window's worth). The route holds the simulated
    model alone: a request reads what fits the largest window of its route's targets."""
    settings = make_settings()
    tasks = settings.data_dir / "tasks.json"
    tasks.write_text('{"default": {"provider": "simulated", "model": "simulated-standard"}}', encoding="utf-8")
    store = await _open(settings.db_path)
    gateway = Gateway(settings, load_config(tasks), Providers(settings), store)
    gateway.memory = Memory(store, SimulatedEmbedder(), cache_bytes=200 * ROW)  # no indexer: vectors are seeded
    await store.run(lambda c: _bulk(c, {"ergon:short": 400, "ergon:long": 6000}, words=60))
    steps: dict[str, int] = {}
    try:
        for cid in ("ergon:short", "ergon:long"):
            first = await gateway.chat(ChatInput(message="what about the rollout budget?", context_id=cid,
                                                 provider_id="simulated"))
            assert first.recall is not None  # both overflow the window
            counter = [0]

            def tick(counter: list[int] = counter) -> int:
                counter[0] += 1
                return 0

            await store.run(lambda c, tick=tick: c.set_progress_handler(tick, 100))
            out = await gateway.chat(ChatInput(message="and the staging rollout?", context_id=cid,
                                               provider_id="simulated"))
            await store.run(lambda c: c.set_progress_handler(None, 100))
            steps[cid] = counter[0]
            assert out.recall is not None and out.recall.mode == "semantic"
    finally:
        await gateway.aclose()
        await store.close()
    assert steps["ergon:long"] < 2 * steps["ergon:short"], steps  # before: ~150x (the whole history was read)


async def test_recent_turns_fit_the_budget_and_say_when_more_is_stored(tmp_path: Path) -> None:
    store = await _open(tmp_path / "r.db")
    try:
        for t in range(30):
            await store.append_turn("a", [NewMessage("user", f"q{t} " + "x" * 80), NewMessage("assistant", f"a{t}")])
        await store.append_turn("a", [NewMessage("user", "failed")], status="error")
        few, more = await store.run(lambda c: recent_turns(c, "a", 100))
        every, rest = await store.run(lambda c: recent_turns(c, "a", 100_000))
    finally:
        await store.close()
    assert more and [t.messages[0].content[:3] for t in few] == ["q27", "q28", "q29"]  # whole turns, in order
    assert sum(t.cost for t in few) <= 100
    assert not rest and len(every) == 30 and every[-1].messages[-1].content == "a29"  # the failed turn is not sent


def test_scope_append_keeps_ids_ascending_replaces_and_trims_to_budget() -> None:
    rng = np.random.default_rng(1)
    m = rng.standard_normal((10, 4)).astype(np.float32)
    each = row_bytes(4)
    assert each == 4 + 4 + 8
    scope = Scope(np.arange(1, 6, dtype=np.int64), *quantize(m[:5]))
    scope.append([7, 6], m[5:7], max_bytes=10 * each)
    scope.append([3], m[9:10], max_bytes=10 * each)  # re-embedded: replaced in place
    ids, codes, scales = scope.rows()
    assert ids.tolist() == [1, 2, 3, 4, 5, 6, 7] and scope.floor == 0
    assert np.allclose(dequantize(codes, scales)[2], m[9], atol=0.02)
    scope.append([8, 9, 10], m[7:10], max_bytes=5 * each)  # over budget: the oldest go
    ids, codes, scales = scope.rows()
    assert ids.tolist() == [6, 7, 8, 9, 10] and scope.floor == 6
    assert np.allclose(dequantize(codes, scales)[0], m[6], atol=0.02) and scope.nbytes <= 5 * each
    scope.append([2], m[:1], max_bytes=5 * each)  # below the floor: not this scope's any more
    assert scope.rows()[0].tolist() == [6, 7, 8, 9, 10]
    top, _ = scope.search(m[8], 2, below=9)
    assert top.tolist()[0] == 8 and set(top.tolist()) <= {6, 7, 8}


def test_int8_scores_match_float32_and_keep_the_ranking() -> None:
    rng = np.random.default_rng(3)
    m = rng.standard_normal((3000, 384)).astype(np.float32)  # more rows than one widened block
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    q = m[1234] + 0.05 * rng.standard_normal(384).astype(np.float32)
    q /= np.linalg.norm(q)
    ids = np.arange(1, 3001, dtype=np.int64)
    scope = Scope(ids, *quantize(m))
    exact_ids, exact = search_rows(ids, m, q, 10)
    got_ids, got = scope.search(q, 10)
    assert got_ids[0] == exact_ids[0] == 1235  # the planted match; the rest are near-ties of random vectors
    assert np.allclose(got, (m @ q)[got_ids - 1], atol=3e-3) and abs(got[-1] - exact[-1]) < 3e-3
    assert scope.nbytes == 3000 * row_bytes(384)  # a quarter of the float32 rows, plus scales and ids
    zero = Scope(ids[:2], *quantize(np.zeros((2, 384), dtype=np.float32)))  # a zero row stays zero
    assert zero.search(q, 2)[1].tolist() == [0.0, 0.0]


def test_scope_loaded_empty_takes_the_indexers_first_vectors() -> None:
    # a search before the context's first vector caches an empty (0, 0) scope; the indexer's first batch used to
    # fail on it ("could not broadcast ... (0,0) into (0,384)") and was retried forever (benchmarks/lean.py soak
    # --pin simulated: the indexer stopped)
    scope = Scope(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.int8), np.zeros(0, dtype=np.float32))
    m = np.ones((2, 4), dtype=np.float32)
    scope.append([1, 2], m, max_bytes=10 * row_bytes(4))
    ids, codes, scales = scope.rows()
    assert ids.tolist() == [1, 2] and codes.shape == (2, 4) and scope.dim == 4
    assert np.array_equal(dequantize(codes, scales), m)


async def test_cache_is_lru_within_its_budget_and_grows_with_the_indexer(tmp_path: Path) -> None:
    store = await _open(tmp_path / "r.db")
    try:
        await store.run(lambda c: _bulk(c, {"a": 100, "b": 100, "c": 100}))
        cache = ScopeCache(MODEL, 250 * ROW)
        for cid in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" needs room
            if cache.get(cid) is None:
                await store.run(lambda conn, cid=cid: cache.load(conn, cid))
        assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
        assert cache.stats()["bytes"] <= 250 * ROW
        cache.add(["a", "b"], [10_001, 10_002], embed_hashed(["new in a", "new in b"]))
        a = cache.get("a")
        assert a is not None and a.rows()[0][-1] == 10_001 and len(a) == 101 and cache.get("b") is None
        big = await store.run(lambda conn: ScopeCache(MODEL, 40 * ROW).load(conn, "a"))
        assert len(big) == 40 and big.floor == big.rows()[0][0]  # only the most recent fit the budget
    finally:
        await store.close()


async def test_search_past_a_truncated_scope_still_finds_the_oldest_match(tmp_path: Path) -> None:
    store = await _open(tmp_path / "r.db")
    try:
        await store.append_turn("ergon:long", [NewMessage("user", "Acme owes us for the quarterly widgets: overdue")])
        await store.append_turn("athena:other", [NewMessage("user", "Acme settled the quarterly widgets: paid")])
        await store.run(lambda c: _bulk(c, {"ergon:long": 300}))
        memory = Memory(store, SimulatedEmbedder(), cache_bytes=50 * ROW)  # the scope holds 50 of 301 vectors
        memory.start()
        assert memory.indexer is not None and memory.cache is not None
        await memory.indexer.drain(15)
        _, in_context = await memory.search("Acme quarterly widgets", context_id="ergon:long", k=1)
        _, in_component = await memory.search("Acme quarterly widgets", component="ERGON", k=1)
        _, anywhere = await memory.search("Acme quarterly widgets", k=2)
        scope = memory.cache.get("ergon:long")
        await memory.stop()
    finally:
        await store.close()
    assert scope is not None and scope.floor > 0 and len(scope) <= 50
    assert in_context[0].content.endswith("overdue") and in_component[0].content.endswith("overdue")
    assert {h.content.split()[-1] for h in anywhere} == {"overdue", "paid"}


async def test_an_idle_indexer_does_not_reread_the_stored_history(tmp_path: Path) -> None:
    """With every stored message embedded, a wake (one per recorded turn) costs the same at 200 and 6,000
    stored messages: the indexer's cursor moves to the newest message instead of staying at 0."""
    steps: list[int] = []
    for n in (200, 6000):
        store = await _open(tmp_path / f"{n}.db")
        memory = Memory(store, SimulatedEmbedder())
        assert memory.indexer is not None
        try:
            await store.run(lambda c, n=n: _bulk(c, {"ergon:a": n}))
            memory.start()
            await memory.indexer.drain(15)
            counter = [0]

            def tick(counter: list[int] = counter) -> int:
                counter[0] += 1
                return 0

            await store.run(lambda c, tick=tick: c.set_progress_handler(tick, 100))
            for _ in range(5):
                assert await memory.indexer._step()  # nothing waiting
            await store.run(lambda c: c.set_progress_handler(None, 100))
            steps.append(counter[0])
        finally:
            await memory.stop()
            await store.close()
    assert steps[1] < 2 * steps[0] + 5, steps  # before: ~30x (every wake re-read every message)
