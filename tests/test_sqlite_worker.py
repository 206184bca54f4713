"""SqliteWorker's own thread (rhetor.sqlite_worker): calls run one at a time in order, results and errors reach the
caller, a call cancelled before it started never runs, close waits for what is queued, and a worker dropped without
close ends its thread."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from pathlib import Path

import pytest

from rhetor.errors import RhetorError
from rhetor.sqlite_worker import SqliteWorker

MIGRATIONS = [["CREATE TABLE t (n INTEGER)"]]


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


async def test_calls_run_in_order_on_one_thread(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "order.db", MIGRATIONS, label="order store")
    await worker.open()
    try:
        seen: list[tuple[int, str]] = []

        def insert(conn: sqlite3.Connection, i: int) -> None:
            seen.append((i, threading.current_thread().name))
            conn.execute("INSERT INTO t VALUES (?)", (i,))

        await asyncio.gather(*(worker.run(lambda c, i=i: insert(c, i)) for i in range(50)))
        assert [i for i, _ in seen] == list(range(50))
        assert {name for _, name in seen} == {"rhetor-order"}
        assert await worker.run(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 50
    finally:
        await worker.close()


async def test_errors_reach_the_caller(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "errors.db", MIGRATIONS, label="errors store")
    await worker.open()
    try:
        with pytest.raises(RhetorError, match="errors store failed"):
            await worker.run(lambda c: c.execute("SELECT * FROM missing"))

        def boom(conn: sqlite3.Connection) -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError):
            await worker.run(boom)
        assert await worker.run(lambda c: 7) == 7  # still serving
    finally:
        await worker.close()
    with pytest.raises(RhetorError, match="not open"):
        await worker.run(lambda c: 1)


async def test_a_call_cancelled_before_it_starts_never_runs(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "cancel.db", MIGRATIONS, label="cancel store")
    await worker.open()
    try:
        started, release = threading.Event(), threading.Event()

        def slow(conn: sqlite3.Connection) -> str:
            started.set()
            release.wait(10)
            return "slow"

        first = asyncio.ensure_future(worker.run(slow))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        second = asyncio.ensure_future(worker.run(lambda c: c.execute("INSERT INTO t VALUES (1)")))
        await asyncio.sleep(0)
        second.cancel()
        release.set()
        assert await first == "slow"
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await worker.run(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 0
    finally:
        await worker.close()


async def test_close_waits_for_queued_calls_and_ends_the_thread(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "closing.db", MIGRATIONS, label="closing store")
    await worker.open()
    pending = [asyncio.ensure_future(worker.run(lambda c, i=i: c.execute("INSERT INTO t VALUES (?)", (i,))))
               for i in range(20)]
    await asyncio.sleep(0)
    await worker.close()
    await asyncio.gather(*pending)
    with sqlite3.connect(tmp_path / "closing.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 20
    for thread in _threads("rhetor-closing"):
        thread.join(5)
    assert not _threads("rhetor-closing")


async def test_a_worker_dropped_without_close_ends_its_thread(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "dropped.db", MIGRATIONS, label="dropped store")
    await worker.open()
    assert _threads("rhetor-dropped")
    del worker
    gc.collect()
    for thread in _threads("rhetor-dropped"):
        thread.join(5)
    assert not _threads("rhetor-dropped")


def test_a_result_for_a_closed_loop_is_dropped(tmp_path: Path) -> None:
    """The loop that asked is gone by the time the call ends: the thread carries on with the next caller's."""
    worker = SqliteWorker(tmp_path / "gone.db", MIGRATIONS, label="gone store")
    release = threading.Event()
    left: list[asyncio.Future[bool]] = []

    async def first() -> None:
        await worker.open()
        left.append(asyncio.ensure_future(worker.run(lambda c: release.wait(10))))
        await asyncio.sleep(0)

    asyncio.run(first())  # its loop closes with the call still running
    release.set()

    async def second() -> int:
        try:
            return int(await worker.run(lambda c: 5))
        finally:
            await worker.close()

    assert asyncio.run(second()) == 5
