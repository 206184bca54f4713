"""Several processes opening one new SQLite file at the same moment all succeed (workers of one server do)."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path

from rhetor.sqlite_worker import SqliteWorker

MIGRATIONS = (
    ("CREATE TABLE a (id INTEGER PRIMARY KEY, v TEXT)",),
    ("CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id))", "CREATE INDEX b_a ON b(a_id)"),
    ("ALTER TABLE a ADD COLUMN w INTEGER",),
)


def _open_at(path: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue[str]) -> None:
    async def main() -> None:
        worker = SqliteWorker(Path(path), MIGRATIONS, label="race store")
        barrier.wait()
        await worker.open()
        await worker.run(lambda c: c.execute("INSERT INTO a (v, w) VALUES ('x', 1)"))
        await worker.close()

    try:
        asyncio.run(main())
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(6):
        path = str(tmp_path / f"round{round_}" / "store.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_at, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        assert outcomes == ["ok"] * 6, outcomes
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
            assert conn.execute("SELECT count(*) FROM a").fetchone()[0] == 6
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
