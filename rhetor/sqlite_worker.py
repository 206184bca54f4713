"""One SQLite database driven from one dedicated worker thread, with an ordered list of migrations.

Every blocking sqlite3 call runs on a single-thread executor, so the event loop never blocks and writes are
serialized. The schema comes from the `migrations` given (append-only; entry i moves the schema from
version i to i + 1), tracked with `PRAGMA user_version`. Shared by the context store and the template store;
knows nothing of their tables, of providers or of HTTP.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

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
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # created, used and closed on the worker thread only

    async def open(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rhetor-{self.path.stem}")
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            # Queued behind any call still in flight, so those finish before the connection goes.
            await asyncio.get_running_loop().run_in_executor(executor, self._close_sync)
        finally:
            executor.shutdown(wait=False)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` on the worker thread; sqlite errors become RhetorError."""
        if self._executor is None:
            raise RhetorError(f"{self._label} is not open")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._call, fn)

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


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


__all__ = ["Migrations", "SqliteWorker", "immediate"]
