"""The usage ledger on PostgreSQL (the LedgerStore protocol of rhetor.governance.ledger): every replica's records
in one table, so usage reports and budgets' seeded spend cover the whole deployment.

Same contract as the SQLite default (rhetor.governance.sqlite_store), whose SQL it reuses with numbered
placeholders: summaries stream one ordered scan through a server-side cursor into the same `Summary`, so memory
holds one group's latencies, never the table. Text keys sort bytewise (COLLATE "C") and NULLs first, as SQLite
sorts them. Knows SQL and the record type; nothing of HTTP, fronts, prices or the driver's pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from rhetor.governance.ledger import UsageFilter, UsageRecord
from rhetor.governance.sqlite_store import (
    COLUMNS,
    GROUP_SQL,
    Summary,
    _record,
    _row,
    _where,
    spend_sql,
    summary_sql,
)
from rhetor.storage.postgres import Database, Migrations

MIGRATIONS: Final[Migrations] = (
    (
        "CREATE TABLE usage_records (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "ts DOUBLE PRECISION NOT NULL, request_id TEXT, key_id TEXT NOT NULL, component TEXT, task_type TEXT, "
        "front TEXT NOT NULL, provider TEXT, model TEXT, attempts TEXT NOT NULL, input_tokens BIGINT NOT NULL, "
        "output_tokens BIGINT NOT NULL, cached_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL, "
        "reasoning_tokens BIGINT NOT NULL, estimated INTEGER NOT NULL, cost_usd DOUBLE PRECISION NOT NULL, "
        "unpriced INTEGER NOT NULL, latency_ms DOUBLE PRECISION NOT NULL, ttft_ms DOUBLE PRECISION, "
        "status TEXT NOT NULL, fallback INTEGER NOT NULL, context_id TEXT, cache_hit INTEGER NOT NULL DEFAULT 0, "
        "saved_usd DOUBLE PRECISION NOT NULL DEFAULT 0, downgraded_from TEXT)",
        "CREATE INDEX usage_records_ts ON usage_records (ts)",
    ),
)
_UTC = "to_timestamp(ts) AT TIME ZONE 'UTC'"
_TEXT_GROUPS = {g: f'{e} COLLATE "C"' for g, e in GROUP_SQL.items() if g not in ("day", "hour", "minute")}
GROUP_SQL_PG: Final = {**_TEXT_GROUPS, "day": f"to_char({_UTC}, 'YYYY-MM-DD')",
                       "hour": f"""to_char({_UTC}, 'YYYY-MM-DD"T"HH24":00Z"')""",
                       "minute": f"""to_char({_UTC}, 'YYYY-MM-DD"T"HH24:MI"Z"')"""}
_PREFETCH = 2000  # rows per round trip of a summary's cursor


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's $1, $2, ... (the shared SQL holds no literal `?`)."""
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


_INSERT: Final = numbered(f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})")


class PostgresLedgerStore:
    def __init__(self, db: Database, *, owns: bool = False) -> None:
        self.db, self._owns = db, owns

    async def open(self) -> None:
        await self.db.open()
        await self.db.migrate("usage", MIGRATIONS)

    async def close(self) -> None:
        if self._owns:
            await self.db.close()

    async def write(self, records: Sequence[UsageRecord]) -> None:
        rows = [_row(r) for r in records]
        async with self.db.transaction() as conn:
            await conn.executemany(_INSERT, rows)

    async def summary(self, flt: UsageFilter, group_by: Sequence[str]) -> dict[str, Any]:
        sql, args = summary_sql(flt, group_by, GROUP_SQL_PG, " NULLS FIRST")
        summary = Summary(group_by)
        async with self.db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            async for row in conn.cursor(numbered(sql), *args, prefetch=_PREFETCH):
                summary.add(tuple(row))
        return summary.result()

    async def records(self, flt: UsageFilter, *, limit: int, offset: int) -> tuple[list[UsageRecord], int]:
        where, args = _where(flt)
        n = len(args)
        async with self.db.connection() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            total = await conn.fetchval(numbered(f"SELECT COUNT(*) FROM usage_records WHERE {where}"), *args)
            rows = await conn.fetch(numbered(f"SELECT {', '.join(COLUMNS)} FROM usage_records WHERE {where} "
                                             "ORDER BY ts DESC, id DESC") + f" LIMIT ${n + 1} OFFSET ${n + 2}",
                                    *args, limit, offset)
        return [_record(tuple(r)) for r in rows], int(total)

    async def purge(self, before: float) -> int:
        status = await self.db.execute("DELETE FROM usage_records WHERE ts < $1", before)
        return int(status.rsplit(" ", 1)[-1])

    async def spend(self, column: str | None, value: str | None, starts: Sequence[float],
                    now: float) -> list[float]:
        sql, args = spend_sql(column, value, starts, now)
        row = await self.db.fetchrow(numbered(sql), *args)
        return [float(v) for v in row]


__all__ = ["GROUP_SQL_PG", "MIGRATIONS", "PostgresLedgerStore", "numbered"]
