"""The background indexer: every stored message ends up with exactly one vector, through a crash mid-batch,
a failing embedder, and a killed process restarted on the same database."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from rhetor.context import NewMessage, SqliteContextStore
from rhetor.context.embedder import SimulatedEmbedder, embed_hashed
from rhetor.context.indexer import Indexer
from rhetor.context.vectors import ScopeCache, backlog_batch
from tests.fakes.server import free_port

MODEL = SimulatedEmbedder.name


async def _seed(store: SqliteContextStore, turns: int, contexts: int = 3) -> None:
    for t in range(turns):
        cid = f"ergon:ctx-{t % contexts}"
        await store.append_turn(cid, [NewMessage("user", f"question {t} about topic {t * 7 % 13}"),
                                      NewMessage("assistant", f"answer {t} mentioning item {t * 5 % 11}")])


def _check_exactly_once(db: Path) -> int:
    """Every message has one vector of MODEL, equal to the simulated embedding of its turn text."""
    conn = sqlite3.connect(db)
    try:
        (messages,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
        rows = conn.execute("SELECT message_id, vector FROM message_vectors WHERE model = ?", (MODEL,)).fetchall()
        assert len(rows) == len({r[0] for r in rows}) == messages
        texts = {p.id: p.text for p in backlog_batch(conn, "no-such-model", 0, messages)}
        got = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        want = embed_hashed([texts[r[0]] for r in rows])
        assert np.allclose(got, want, atol=1e-6)
        return int(messages)
    finally:
        conn.close()


class _Stuck(SimulatedEmbedder):
    """Answers `ok_batches` batches, then hangs forever on the next (the indexer is killed there)."""

    def __init__(self, ok_batches: int) -> None:
        super().__init__()
        self.calls = 0
        self.ok_batches = ok_batches
        self.hung = asyncio.Event()

    async def embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
        self.calls += 1
        if self.calls > self.ok_batches:
            self.hung.set()
            await asyncio.Event().wait()
        return await super().embed(texts)


class _Flaky(SimulatedEmbedder):
    def __init__(self, fail_on: set[int]) -> None:
        super().__init__()
        self.calls, self.fail_on = 0, fail_on

    async def embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[type-arg]
        self.calls += 1
        if self.calls in self.fail_on:
            raise ConnectionError("embedding endpoint went away")
        return await super().embed(texts)


async def test_killed_mid_batch_then_restarted_embeds_every_message_once(tmp_path: Path) -> None:
    store = SqliteContextStore(tmp_path / "r.db")
    await store.open()
    try:
        await _seed(store, 100)  # 200 messages: backlog of 7 batches of 32
        stuck = _Stuck(ok_batches=3)
        first = Indexer(store, stuck, ScopeCache(MODEL, 2**20), batch=32)
        first.start()
        await asyncio.wait_for(stuck.hung.wait(), 10)
        await first.stop()  # the crash: cancelled in the middle of a batch
        assert (await first.status())["embedded"] == 96 and (await first.status())["backlog"] == 104

        second = Indexer(store, SimulatedEmbedder(), ScopeCache(MODEL, 2**20), batch=32)
        second.start()
        await second.drain(10)
        status = await second.status()
        await second.stop()
        assert status["backlog"] == 0 and status["embedded"] == 200
        assert status["indexed"] == 200  # 96 stored before the crash + 104 embedded now, all searchable
        assert second.embedded_total == 104  # nothing already stored was embedded again
    finally:
        await store.close()
    assert _check_exactly_once(tmp_path / "r.db") == 200


async def test_failing_embedder_is_retried_and_nothing_is_missed(tmp_path: Path) -> None:
    store = SqliteContextStore(tmp_path / "r.db")
    await store.open()
    try:
        await _seed(store, 40)
        flaky = _Flaky(fail_on={2})
        indexer = Indexer(store, flaky, ScopeCache(MODEL, 2**20), batch=16)
        indexer.start()
        await indexer.drain(15)
        assert indexer.state != "error" and indexer.last_error is None  # recovered after one backoff
        await _seed(store, 5)  # messages arriving later are picked up too
        indexer.notify()
        await indexer.drain(10)
        await indexer.stop()
    finally:
        await store.close()
    assert _check_exactly_once(tmp_path / "r.db") == 90


def test_process_killed_mid_backlog_restarts_where_it_stopped(tmp_path: Path) -> None:
    async def seed() -> None:
        store = SqliteContextStore(tmp_path / "rhetor.db")
        await store.open()
        await _seed(store, 400)  # 800 messages = 25 batches of 32
        await store.close()

    asyncio.run(seed())

    def serve(delay_scale: str) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        env = {**os.environ, "RHETOR_PORT": str(port), "RHETOR_DATA_DIR": str(tmp_path),
               "RHETOR_EMBEDDER": "simulated", "RHETOR_SIMULATED_DELAY_SCALE": delay_scale,
               "RHETOR_INDEX_INTERVAL_S": "0.2", "HERMES_URL": "http://127.0.0.1:9"}
        proc = subprocess.Popen([sys.executable, "-m", "rhetor"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True)
        return proc, f"http://127.0.0.1:{port}/api/v1/memory/status"

    def poll(proc: subprocess.Popen[str], url: str, done: object) -> dict[str, int]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert proc.poll() is None, "rhetor exited"
            try:
                status: dict[str, int] = httpx.get(url, timeout=2).json()
                if done(status):  # type: ignore[operator]
                    return status
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        raise AssertionError("timed out waiting for the indexer")

    proc, url = serve("1")  # 50 ms per simulated batch: the backlog takes >1 s, so we catch it midway
    try:
        mid = poll(proc, url, lambda s: s["embedded"] >= 32)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert 0 < mid["backlog"] < 800

    proc, url = serve("0")
    try:
        final = poll(proc, url, lambda s: s["backlog"] == 0)
        assert final["embedded"] == 800
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    assert _check_exactly_once(tmp_path / "rhetor.db") == 800
