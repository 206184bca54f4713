"""The default LedgerStore: usage records in their own SQLite file (`$RHETOR_DATA_DIR/usage.db`, WAL), driven by
the shared one-thread SqliteWorker with ordered migrations. Records are written packed (rhetor.governance.
sqlite_packs: one row per set and flush) where this SQLite reads them back exactly, else as rows (rhetor.governance.
sqlite_rows); the view `usage_records` shows both as the one table it was before migration 3. Summaries are
computed on the worker thread from one ordered scan of the range, one group at a time, so memory holds one group's
latencies, never the table. Knows SQL and the record type; nothing of HTTP, fronts or prices.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from rhetor.errors import ConfigError
from rhetor.governance import sqlite_packs
from rhetor.governance.ledger import UsageFilter, UsageRecord
from rhetor.governance.sqlite_packs import Cond, PackWriter, render
from rhetor.governance.sqlite_rows import RowWriter
from rhetor.sqlite_worker import Migrations, SqliteWorker, immediate

MIGRATIONS: Migrations = [
    [
        """CREATE TABLE usage_records (
            id INTEGER PRIMARY KEY, ts REAL NOT NULL, request_id TEXT, key_id TEXT NOT NULL, component TEXT,
            task_type TEXT, front TEXT NOT NULL, provider TEXT, model TEXT, attempts TEXT NOT NULL,
            input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, estimated INTEGER NOT NULL,
            cost_usd REAL NOT NULL, unpriced INTEGER NOT NULL, latency_ms REAL NOT NULL, ttft_ms REAL,
            status TEXT NOT NULL, fallback INTEGER NOT NULL, context_id TEXT)""",
        "CREATE INDEX usage_records_ts ON usage_records (ts)",
    ],
    [
        "ALTER TABLE usage_records ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE usage_records ADD COLUMN saved_usd REAL NOT NULL DEFAULT 0",
        "ALTER TABLE usage_records ADD COLUMN downgraded_from TEXT",
    ],
    sqlite_packs.MIGRATION,  # the table becomes usage_rows; usage_packs; the view usage_records of both
]

COLUMNS = ("ts", "request_id", "key_id", "component", "task_type", "front", "provider", "model", "attempts",
           "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "estimated",
           "cost_usd", "unpriced", "latency_ms", "ttft_ms", "status", "fallback", "context_id", "cache_hit",
           "saved_usd", "downgraded_from")
# group name -> SQL expression; `model` is provider/model so two vendors' same-named models stay apart
GROUP_SQL = {"component": "component", "model": "provider || '/' || model", "provider": "provider",
             "key": "key_id", "task": "task_type", "day": "date(ts, 'unixepoch')", "front": "front",
             "status": "status",
             # time buckets (UTC) for a traffic chart: the dashboard's last hour (rhetor/ui)
             "hour": "strftime('%Y-%m-%dT%H:00Z', ts, 'unixepoch')",
             "minute": "strftime('%Y-%m-%dT%H:%MZ', ts, 'unixepoch')"}
# None binds as NULL through an adapter that returns it as it is. Without one, sqlite3 looks every None parameter
# up through two failed attribute lookups (`__adapt__`, `__conform__`): ~2k instructions each, 4-6 per usage
# record (~8k of the ~64k a record costs to write, measured under callgrind). `{}.get` is that adapter in C (an
# empty dict, never written: every key maps to None). Process-wide, and the same for every store: None is NULL.
_AS_NULL: dict[None, None] = {}
sqlite3.register_adapter(type(None), _AS_NULL.get)
_SUMS = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")


def _row(r: UsageRecord) -> tuple[Any, ...]:
    """The record's values in COLUMNS' order: attempts as JSON, flags as 0/1 integers (shared with PostgreSQL)."""
    return (r.ts, r.request_id, r.key_id, r.component, r.task_type, r.front, r.provider, r.model,
            orjson.dumps(r.attempts).decode(), r.input_tokens, r.output_tokens, r.cached_tokens,
            r.cache_write_tokens, r.reasoning_tokens, int(r.estimated), r.cost_usd, int(r.unpriced), r.latency_ms,
            r.ttft_ms, r.status, int(r.fallback), r.context_id, int(r.cache_hit), r.saved_usd, r.downgraded_from)


# Usage rows (rhetor.governance.sqlite_rows) bind NULL as a float NaN, which SQLite stores as NULL: a float binds
# directly, where None goes through sqlite3's adapter lookup (~1.2k instructions each, 4-6 per record: ~5.8k of a
# record's ~33k write, callgrind). Checked here: if this SQLite ever kept a NaN, None is bound as it is.
_NULL: Any = math.nan
with closing(sqlite3.connect(":memory:")) as _probe:
    if _probe.execute("SELECT ? IS NULL", (_NULL,)).fetchone()[0] != 1:
        _NULL = None


def _record(row: Sequence[Any]) -> UsageRecord:
    d = dict(zip(COLUMNS, row, strict=True))
    d["attempts"] = orjson.loads(d["attempts"])
    for flag in ("estimated", "unpriced", "fallback", "cache_hit"):
        d[flag] = bool(d[flag])
    return UsageRecord(**d)


def conditions(flt: UsageFilter) -> list[Cond]:
    conds: list[Cond] = [("ts", ">=", flt.since), ("ts", "<", flt.until)]
    for value, column in ((flt.component, "component"), (flt.provider, "provider"), (flt.key, "key_id"),
                          (flt.task, "task_type"), (flt.front, "front"), (flt.status, "status")):
        if value is not None:
            conds.append((column, "=", value))
    if flt.model is not None:
        provider, sep, model = flt.model.partition("/")
        if sep:
            conds += [("provider", "=", provider), ("model", "=", model)]
        else:
            conds.append(("model", "=", flt.model))
    return conds


def _where(flt: UsageFilter) -> tuple[str, list[Any]]:
    return render(conditions(flt))


# What a reader selects from: a FROM clause (its WHERE included) holding the records that match the conditions,
# with the columns named (usage_records' names). The table's by default (PostgreSQL); SQLite's rows and packs.
Source = Callable[[Sequence[Cond], Sequence[str]], tuple[str, list[Any]]]


def table_source(conds: Sequence[Cond], columns: Sequence[str]) -> tuple[str, list[Any]]:
    where, args = render(conds)
    return f"usage_records WHERE {where}", args


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return None
    return round(sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)], 3)


class _Bucket:
    __slots__ = ("cancelled", "cost", "errors", "estimated", "fallbacks", "latencies", "requests", "sums",
                 "unpriced")

    def __init__(self) -> None:
        self.requests = self.errors = self.cancelled = self.unpriced = self.estimated = self.fallbacks = 0
        self.cost = 0.0
        self.sums = [0] * len(_SUMS)
        self.latencies: list[float] = []

    def add(self, row: Sequence[Any]) -> None:
        # row: *sums, cost, status, unpriced, estimated, latency, fallback
        n = len(_SUMS)
        for i in range(n):
            self.sums[i] += row[i]
        self.cost += row[n]
        status = row[n + 1]
        self.errors += status not in ("ok", "cancelled")
        self.cancelled += status == "cancelled"
        self.unpriced += row[n + 2]
        self.estimated += row[n + 3]
        self.requests += 1
        self.latencies.append(row[n + 4])
        self.fallbacks += row[n + 5]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": self.requests, **dict(zip(_SUMS, self.sums, strict=True))}
        out["total_tokens"] = out["input_tokens"] + out["output_tokens"]
        out.update(cost_usd=round(self.cost, 8), errors=self.errors, cancelled=self.cancelled,
                   unpriced=self.unpriced, estimated=self.estimated, fallbacks=self.fallbacks,
                   p50_latency_ms=percentile(self.latencies, 0.50), p95_latency_ms=percentile(self.latencies, 0.95))
        return out


class Summary:
    """The summary of one ordered scan (rows from `summary_sql`), fed one row at a time: memory holds one group's
    latencies (and the totals'), never the table. Shared by the SQLite and PostgreSQL ledgers."""

    def __init__(self, group_by: Sequence[str]) -> None:
        self.group_by, self.width = list(group_by), len(group_by)
        self.totals, self.bucket = _Bucket(), _Bucket()
        self.buckets: list[dict[str, Any]] = []
        self.current: tuple[Any, ...] | None = None

    def add(self, row: Sequence[Any]) -> None:
        key = tuple(row[:self.width])
        if key != self.current:
            self._close()
            self.current, self.bucket = key, _Bucket()
        self.bucket.add(row[self.width:])
        self.totals.add(row[self.width:])

    def _close(self) -> None:
        if self.current is not None and self.width:
            self.buckets.append({**dict(zip(self.group_by, self.current, strict=True)), **self.bucket.as_dict()})

    def result(self) -> dict[str, Any]:
        self._close()
        self.current = None
        self.totals.latencies.sort()
        return {"totals": self.totals.as_dict(), "buckets": self.buckets}


_SUMMARY_COLUMNS = ("key_id", "component", "task_type", "front", "provider", "model", *_SUMS, "cost_usd",
                    "status", "unpriced", "estimated", "latency_ms", "fallback")  # what GROUP_SQL and metrics use


def summary_sql(flt: UsageFilter, group_by: Sequence[str], groups: dict[str, str] = GROUP_SQL,
                nulls_first: str = "", source: Source = table_source) -> tuple[str, list[Any]]:
    """The ordered scan a Summary reads (`?` placeholders; `groups` maps a group to its SQL expression)."""
    timed = not {"day", "hour", "minute"}.isdisjoint(group_by)  # a packed record's ts read only if grouped by it
    frm, args = source(conditions(flt), ("ts", *_SUMMARY_COLUMNS) if timed else _SUMMARY_COLUMNS)
    keys = [groups[g] for g in group_by]
    metrics = f"{', '.join(_SUMS)}, cost_usd, status, unpriced, estimated, latency_ms, fallback"
    order = ", ".join([*(f"{k}{nulls_first}" for k in keys), "latency_ms"])
    return f"SELECT {', '.join([*keys, metrics])} FROM {frm} ORDER BY {order}", args


def spend_sql(column: str | None, value: str | None, starts: Sequence[float], now: float,
              source: Source = table_source) -> tuple[str, list[Any]]:
    """Cost and tokens since each of `starts` (up to `now`), for all records or those whose `column` = `value`:
    one row of 2 * len(starts) sums (`?` placeholders)."""
    sums = ", ".join(f"COALESCE(SUM(CASE WHEN ts >= ? THEN {e} END), 0)" for _ in starts
                     for e in ("cost_usd", "input_tokens + output_tokens"))
    args: list[Any] = [s for s in starts for _ in range(2)]
    conds: list[Cond] = [("ts", ">=", min(starts)), ("ts", "<", now)]
    if column is not None:
        conds.append((column, "=", value))
    frm, extra = source(conds, ("ts", "cost_usd", "input_tokens", "output_tokens"))
    return f"SELECT {sums} FROM {frm}", args + extra


def summarize(conn: sqlite3.Connection, flt: UsageFilter, group_by: Sequence[str],
              source: Source = table_source) -> dict[str, Any]:
    sql, args = summary_sql(flt, group_by, source=source)
    summary = Summary(group_by)
    for row in conn.execute(sql, args):
        summary.add(row)
    return summary.result()


class SqliteLedgerStore:
    def __init__(self, path: Path) -> None:
        self.worker = SqliteWorker(path, MIGRATIONS, label="usage store")
        self._rows = RowWriter(_NULL)  # used on the worker thread only
        self._writer: RowWriter | PackWriter = self._rows
        self._source: Source = partial(sqlite_packs.source, packs=False)

    async def open(self) -> None:
        await self.worker.open()
        try:
            functions, exact = await self.worker.run(self._layout)
        except BaseException:
            await self.worker.close()
            raise
        # packs are read wherever this SQLite has the JSON functions, written where it also reads them exactly
        self._source = partial(sqlite_packs.source, packs=functions)
        self._writer = PackWriter(self._rows) if functions and exact else self._rows

    def _layout(self, conn: sqlite3.Connection) -> tuple[bool, bool]:
        functions, exact = sqlite_packs.capable(conn)
        if not functions and conn.execute("SELECT EXISTS (SELECT 1 FROM usage_packs)").fetchone()[0]:
            raise ConfigError(f"{self.worker.path} holds packed usage records and this SQLite "
                              f"({sqlite3.sqlite_version}) has no JSON functions to read them: use a newer one")
        return functions, exact

    async def close(self) -> None:
        await self.worker.close()

    async def write(self, records: Sequence[UsageRecord]) -> None:
        write = self._writer.write

        def insert(conn: sqlite3.Connection) -> None:  # grouped by set, off the loop (rhetor.governance.sqlite_rows)
            with immediate(conn):
                write(conn, records)

        await self.worker.run(insert)

    async def summary(self, flt: UsageFilter, group_by: Sequence[str]) -> dict[str, Any]:
        source = self._source
        return await self.worker.run(lambda conn: summarize(conn, flt, group_by, source))

    async def records(self, flt: UsageFilter, *, limit: int, offset: int) -> tuple[list[UsageRecord], int]:
        conds = conditions(flt)
        counted, count_args = self._source(conds, ("1",))
        listed, args = self._source(conds, ("id", *COLUMNS))

        def page(conn: sqlite3.Connection) -> tuple[list[UsageRecord], int]:
            total = int(conn.execute(f"SELECT COUNT(*) FROM {counted}", count_args).fetchone()[0])
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {listed} ORDER BY ts DESC, id DESC "
                                "LIMIT ? OFFSET ?", [*args, limit, offset]).fetchall()
            return [_record(r) for r in rows], total

        return await self.worker.run(page)

    async def purge(self, before: float) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                return sqlite_packs.purge(conn, before)

        return await self.worker.run(delete)

    async def spend(self, column: str | None, value: str | None, starts: Sequence[float],
                    now: float) -> list[float]:
        sql, args = spend_sql(column, value, starts, now, self._source)
        row = await self.worker.run(lambda conn: conn.execute(sql, args).fetchone())
        return [float(v) for v in row]


__all__ = ["COLUMNS", "GROUP_SQL", "MIGRATIONS", "Source", "SqliteLedgerStore", "Summary", "conditions", "percentile",
           "spend_sql", "summarize", "summary_sql", "table_source"]
