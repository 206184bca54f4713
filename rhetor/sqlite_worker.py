"""One SQLite database driven from one dedicated worker thread, with an ordered list of migrations.

Every blocking sqlite3 call runs on the worker's own thread, one call at a time, so the event loop never blocks
and writes are serialized. The hop is a SimpleQueue to the thread and `call_soon_threadsafe` back: a call costs
~26k instructions of hop where `run_in_executor` on a ThreadPoolExecutor cost ~132k (its Python Future,
Condition, semaphore and chained asyncio future; benchmarks/README.md, round 8) — the usage ledger pays one per
flush, the context store one per stored turn. The schema comes from the `migrations` given (append-only; entry i
moves the schema from version i to i + 1), tracked with `PRAGMA user_version`. Shared by the context store, the
template store and governance's stores; knows nothing of their tables, of providers or of HTTP.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from queue import SimpleQueue
from typing import Any, TypeVar

from rhetor.errors import ConfigError, RhetorError

T = TypeVar("T")
OPEN_PATIENCE = 15.0  # seconds another process may hold the file while this one opens it
Migrations = Sequence[Sequence[str]]


class SqliteWorker:
    """A SQLite file at `path` (WAL; parent directories created on `open`); `label` names it in errors."""

    def __init__(self, path: Path, migrations: Migrations, *, label: str) -> None:
        self.path = Path(path)
        self._migrations = migrations
        self._label = label
        self._jobs: SimpleQueue[_Job | None] | None = None  # to the worker thread; None stops it
        self._conn: sqlite3.Connection | None = None  # created, used and closed on the worker thread only

    async def open(self) -> None:
        if self._jobs is not None:
            return
        jobs: SimpleQueue[_Job | None] = SimpleQueue()
        threading.Thread(target=_serve, args=(jobs,), name=f"rhetor-{self.path.stem}", daemon=True).start()
        # a worker dropped without close() still ends its thread (the thread holds the queue, not the worker)
        weakref.finalize(self, jobs.put, None)
        self._jobs = jobs
        try:
            await self._submit(jobs, self._open_sync)
        except BaseException:
            self._jobs = None
            jobs.put(None)
            raise

    async def close(self) -> None:
        jobs, self._jobs = self._jobs, None
        if jobs is None:
            return
        try:
            # Queued behind any call still in flight, so those finish before the connection goes.
            await self._submit(jobs, self._close_sync)
        finally:
            jobs.put(None)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the worker thread; sqlite errors become RhetorError."""
        jobs = self._jobs
        if jobs is None:
            raise RhetorError(f"{self._label} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        jobs.put((self._call, fn, future, loop))
        return await future

    @staticmethod
    def _submit(jobs: SimpleQueue[_Job | None], fn: Callable[[], None]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        jobs.put((_no_arg, fn, future, loop))
        return future

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise RhetorError(f"{self._label} is not open")
        try:
            return fn(self._conn)
        except sqlite3.Error as exc:
            raise RhetorError(f"{self._label} failed: {exc}") from exc

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"cannot open {self._label} {self.path}: {exc}") from exc
        try:
            _settle(conn, self._migrate)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise ConfigError(f"cannot open {self._label} {self.path}: {exc}") from exc
            raise
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current, known = _user_version(conn), len(self._migrations)
        if current > known:
            raise ConfigError(f"{self._label} {self.path} has schema version {current}; this Rhetor knows up to "
                              f"{known}: upgrade Rhetor")
        for target in range(current + 1, known + 1):
            with immediate(conn):
                if _user_version(conn) >= target:  # another process migrated while we waited for the lock
                    continue
                for statement in self._migrations[target - 1]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # another process may hold the WAL; the checkpoint is an optimisation, closing is not
        finally:
            conn.close()


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken up front, so a read-then-write cannot race another writer."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also covers a failed COMMIT, so the connection stays usable
            conn.execute("ROLLBACK")
        raise


def _settle(conn: sqlite3.Connection, migrate: Callable[[sqlite3.Connection], None]) -> None:
    """Pragmas then migrations, retried while another process holds the file (bounded: OPEN_PATIENCE seconds).

    Two workers of one server open the same file at the same moment; switching a new file to WAL or reading the
    schema during the other's switch answers SQLITE_BUSY at once (SQLite skips the busy handler where waiting
    could deadlock), so the whole sequence is retried — every step is idempotent.
    """
    deadline, pause = time.monotonic() + OPEN_PATIENCE, 0.005
    while True:
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            migrate(conn)
            return
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() + pause > deadline:
                raise
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


_Job = tuple[Callable[[Any], Any], Any, "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _serve(jobs: SimpleQueue[_Job | None]) -> None:
    """The worker thread: each job in turn, until a None."""
    while (job := jobs.get()) is not None:
        _run(*job)
        job = None  # nothing of a finished job kept alive while waiting for the next


def _run(call: Callable[[Any], Any], arg: Any, future: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
    """`call(arg)`, its outcome set on `future` from the loop's thread. A job whose caller was cancelled before it
    started is skipped, as a ThreadPoolExecutor's would be."""
    if future.cancelled():
        return
    try:
        result = call(arg)
    except BaseException as exc:  # handed to the caller, whatever it is (the executor did the same)
        _settle_from_thread(loop, _fail, future, exc)
    else:
        _settle_from_thread(loop, _succeed, future, result)


def _settle_from_thread(loop: asyncio.AbstractEventLoop, how: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(how, *args)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        pass


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # cancelled meanwhile
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _no_arg(fn: Callable[[], Any]) -> Any:
    return fn()


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


__all__ = ["Migrations", "SqliteWorker", "immediate"]
