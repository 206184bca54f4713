"""The usage ledger: one `UsageRecord` per request, handed to `Ledger.record()` on the hot path (an append to a
bounded in-memory buffer, nothing else) and written in batches by a background task every `flush_interval_s`
to a `LedgerStore` (SQLite by default: rhetor.governance.sqlite_store). Flushed on shutdown, so a SIGTERM loses
nothing and a kill -9 at most the last interval. If the store is unavailable the records stay buffered
(bounded: the oldest are dropped and counted) and `status()` says so; a request never fails because of it.
Old records are purged after `retention_days`. Knows nothing of HTTP, fronts, providers or SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

log = logging.getLogger("rhetor.usage")

GROUPS = ("component", "model", "provider", "key", "task", "day", "hour", "minute", "front", "status")


@dataclass(slots=True)
class UsageRecord:
    """One request, whatever its front and however it ended. `status` is "ok", "cancelled" or an error type."""

    ts: float  # unix seconds at the start of the request
    request_id: str | None
    key_id: str
    component: str | None
    task_type: str | None
    front: str
    provider: str | None
    model: str | None
    attempts: list[dict[str, Any]] = field(default_factory=list)  # [{provider, model, outcome}]
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # the upstream gave no usage (e.g. a cut stream): tokens are Rhetor's estimate
    cost_usd: float = 0.0
    unpriced: bool = False  # no price for provider/model: cost 0, never guessed
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: str = "ok"
    fallback: bool = False
    context_id: str | None = None
    # governance (rhetor.governance.gate): a response-cache hit costs 0 and records what it saved; a budget's
    # downgrade records the target it replaced (provider/model)
    cache_hit: bool = False
    saved_usd: float = 0.0
    downgraded_from: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which records a query covers: [since, until) in unix seconds, and optional exact matches."""

    since: float
    until: float
    component: str | None = None
    model: str | None = None
    provider: str | None = None
    key: str | None = None
    task: str | None = None
    front: str | None = None
    status: str | None = None


class LedgerStore(Protocol):
    """Where records live. SQLite by default; a shared store (PostgreSQL) slots in behind the same methods."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, records: Sequence[UsageRecord]) -> None: ...

    async def summary(self, flt: UsageFilter, group_by: Sequence[str]) -> dict[str, Any]: ...

    async def records(self, flt: UsageFilter, *, limit: int, offset: int) -> tuple[list[UsageRecord], int]: ...

    async def purge(self, before: float) -> int: ...

    async def spend(self, column: str | None, value: str | None, starts: Sequence[float],
                    now: float) -> list[float]:
        """[cost since starts[0], tokens since starts[0], cost since starts[1], ...] up to `now`, of every record
        or of those whose `column` equals `value` (budgets seed their windows from it at start)."""
        ...


class Ledger:
    """The batched writer in front of a LedgerStore. `record()` is the only call on the request path."""

    def __init__(self, store: LedgerStore, *, flush_interval_s: float = 1.0, buffer_max: int = 100_000,
                 retention_days: float = 90.0, batch_max: int = 5000) -> None:
        self.store = store
        self.flush_interval_s = flush_interval_s
        self.buffer_max = buffer_max
        self.retention_days = retention_days
        self.batch_max = batch_max
        self._buffer: deque[UsageRecord] = deque()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._open = False
        self._next_purge = 0.0
        self.written = 0
        self.dropped = 0
        self.unpriced = 0
        self.last_error: str | None = None

    # -- hot path ------------------------------------------------------------------------------------------
    def record(self, rec: UsageRecord) -> None:
        if len(self._buffer) >= self.buffer_max:
            self._buffer.popleft()
            self.dropped += 1
        if rec.unpriced:
            self.unpriced += 1
        self._buffer.append(rec)

    # -- lifecycle -----------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._ensure_open()
        self._task = asyncio.create_task(self._loop(), name="rhetor-usage-ledger")

    async def close(self, timeout_s: float = 10.0) -> None:
        task, self._task = self._task, None
        if task is not None:
            async with self._lock:  # never cancel a write half-way: its batch would be neither stored nor buffered
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout_s)
        if self._buffer:
            log.warning("usage ledger: %d records could not be written at shutdown (%s)", len(self._buffer),
                        self.last_error)
        if self._open:
            self._open = False
            with contextlib.suppress(Exception):
                await self.store.close()

    async def _ensure_open(self) -> bool:
        if self._open:
            return True
        try:
            await self.store.open()
        except Exception as exc:  # a missing disk or a locked file must not stop Rhetor from serving
            self.last_error = f"cannot open the usage store: {exc}"
            return False
        self._open = True
        return True

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval_s)
            with contextlib.suppress(Exception):
                await self.flush()
            if self._open and self.retention_days > 0 and time.monotonic() >= self._next_purge:
                self._next_purge = time.monotonic() + 3600
                with contextlib.suppress(Exception):
                    await self.store.purge(time.time() - self.retention_days * 86400)

    async def flush(self) -> None:
        """Write everything buffered so far. On failure the batch goes back to the front of the buffer."""
        async with self._lock:
            # Only what is buffered now: under steady load, draining until empty would chase the new arrivals in
            # a stream of tiny batches (one SQLite thread hop per few requests, ~25% of a core at full load).
            left = len(self._buffer)
            while left > 0 and self._buffer:
                if not await self._ensure_open():
                    return
                buffer = self._buffer
                size = min(self.batch_max, left, len(buffer))
                if size == len(buffer):  # all of it (the usual flush): taken in C, not one popleft per record
                    batch = list(buffer)
                    buffer.clear()
                else:
                    batch = [buffer.popleft() for _ in range(size)]
                left -= len(batch)
                try:
                    await self.store.write(batch)
                except Exception as exc:
                    self.last_error = f"cannot write usage records: {exc}"
                    room = self.buffer_max - len(self._buffer)
                    keep = batch[-room:] if room > 0 else []
                    self.dropped += len(batch) - len(keep)
                    self._buffer.extendleft(reversed(keep))
                    return
                self.written += len(batch)
                self.last_error = None

    # -- inspection ----------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        healthy = self._open and self.last_error is None
        return {"state": "ok" if healthy else "degraded", "buffered": len(self._buffer), "written": self.written,
                "dropped": self.dropped, "unpriced": self.unpriced, "error": self.last_error}


class UsageSink(Protocol):
    """What the gateway needs of the ledger: a non-blocking `record`."""

    def record(self, rec: UsageRecord) -> None: ...


__all__ = ["GROUPS", "Ledger", "LedgerStore", "UsageFilter", "UsageRecord", "UsageSink"]
