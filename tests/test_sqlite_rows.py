"""The usage ledger's grouped SQLite INSERTs (rhetor.governance.sqlite_rows): what is inlined as an SQL literal is
quoted safely, and every record reads back as it was given, whatever its strings hold; the table stays intact."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path

import pytest

from rhetor.governance import sqlite_rows
from rhetor.governance.ledger import UsageFilter, UsageRecord
from rhetor.governance.sqlite_rows import (
    INSERT_ALL,
    MAX_LITERAL,
    MIN_SET,
    OPTIONAL,
    ROWS_8,
    ROWS_32,
    SET,
    VARYING,
    RowWriter,
    literal,
    set_statements,
)
from rhetor.governance.sqlite_store import COLUMNS, MIGRATIONS, SqliteLedgerStore, _record

HOSTILE = ["x'); DROP TABLE usage_records; --", "'", "''", "'''", "\\", "a\\'b", "\\'", "--", "/*", "*/ x", ";",
           "?", "?1", ":name", "@a", "$1", "%s", "'||(SELECT 1)||'", "x' OR '1'='1", "NULL", "0x41", "X'41'",
           "", " ", "\x00", "a\x00'b", "\n", "\r\n", "\t", "\x7f", "é", "☃'; --", "\u2028", "\ud7ff", "😀",
           "x" * MAX_LITERAL, "'" * MAX_LITERAL, "x" * (MAX_LITERAL + 1), "y" * 100_000]


def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:", isolation_level=None)
    for step in MIGRATIONS:
        for statement in step:
            c.execute(statement)
    c.execute("CREATE TABLE bystander (x TEXT)")
    c.execute("INSERT INTO bystander VALUES ('still here')")
    return c


def rec(i: int, text: str = "k", **kw: object) -> UsageRecord:
    r = UsageRecord(1.7e9 + i / 7, f"req-{i}", text, text, text, text, text, text,
                    [{"provider": text, "model": text, "outcome": "ok"}], i, 2 * i, 0, 0, i % 3, False, i * 1e-7,
                    False, 0.1 + i / 3, None if i % 2 else i / 9, text, False, text, False, 0.0, text)
    for name, value in kw.items():
        setattr(r, name, value)
    return r


def stored(c: sqlite3.Connection) -> list[UsageRecord]:
    return [_record(row) for row in c.execute(f"SELECT {', '.join(COLUMNS)} FROM usage_records ORDER BY ts")]


def intact(c: sqlite3.Connection, schema: list[tuple[str, ...]]) -> None:
    assert c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall() == schema
    assert c.execute("SELECT x FROM bystander").fetchall() == [("still here",)]
    assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def write(c: sqlite3.Connection, records: list[UsageRecord], null: object = None) -> RowWriter:
    c.execute("BEGIN IMMEDIATE")
    (writer := RowWriter(null)).write(c, records)
    c.execute("COMMIT")
    return writer


def test_every_column_once() -> None:
    assert sorted(VARYING + OPTIONAL + SET) == sorted(COLUMNS)
    assert INSERT_ALL.count("?") == len(COLUMNS)


@pytest.mark.parametrize("value, sql", [(None, "NULL"), (0, "0"), (-7, "-7"), (2 ** 63 - 1, str(2 ** 63 - 1)),
                                        (0.0, "0.0"), (3.0, "3.0"), (-2.0 ** 52, repr(-2.0 ** 52)),
                                        ("", "''"), ("it's", "'it''s'"), ("'", "''''"), ("a\\b", "'a\\b'"),
                                        ("x' OR '1'='1", "'x'' OR ''1''=''1'")])
def test_literals(value: object, sql: str) -> None:
    assert literal(value) == sql


@pytest.mark.parametrize("value", [True, False, 2 ** 63, -(2 ** 63), 10 ** 30, 0.1, 1 / 3, -0.0, 2.0 ** 53, math.nan,
                                   math.inf, -math.inf, "\x00", "a\nb", "\x7f", "é", "😀", "x" * (MAX_LITERAL + 1),
                                   b"bytes", bytearray(b"x"), [1], (1,), {"a": 1}, object()])
def test_not_inlined(value: object) -> None:
    assert literal(value) is None
    assert set_statements(["k", value]) is None


def test_inlined_literals_store_what_binding_stores() -> None:
    c = sqlite3.connect(":memory:")
    c.execute("CREATE TABLE t (a, b TEXT, c INTEGER, d REAL)")
    values = [v for v in (*HOSTILE, 0, 1, -1, 2 ** 63 - 1, -(2 ** 63) + 1, 0.0, 5.0, -3.0, 2.0 ** 52, None)
              if literal(v) is not None]
    assert len(values) > 30
    for v in values:
        sql = literal(v)
        c.execute(f"INSERT INTO t VALUES ({sql}, {sql}, {sql}, {sql})")
        c.execute("INSERT INTO t VALUES (?, ?, ?, ?)", (v, v, v, v))
        by_literal, by_binding = c.execute("SELECT a, typeof(a), b, typeof(b), c, typeof(c), d, typeof(d) FROM t "
                                           "ORDER BY rowid DESC LIMIT 2").fetchall()
        assert by_literal == by_binding, v
    assert c.execute("SELECT COUNT(*) FROM t").fetchone() == (2 * len(values),)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_set_values_round_trip(text: str) -> None:
    c = conn()
    schema = c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    records = [rec(i, text) for i in range(ROWS_32 + ROWS_8 + 3)]  # one statement of 32 rows, one of 8, 3 of 1
    writer = write(c, records, math.nan)
    assert stored(c) == records
    # a short printable-ASCII value went in as literals (a set holds it 7 times, twice more in its attempts' JSON)
    assert (list(writer._memo.values()) != [None]) == (literal(text) is not None and len(text) < 100)
    intact(c, schema)


def test_hostile_varying_values_round_trip() -> None:
    c = conn()
    schema = c.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
    records = [rec(i, request_id=HOSTILE[i % len(HOSTILE)], context_id=HOSTILE[-1 - i % len(HOSTILE)],
                   cost_usd=[math.inf, 1e308, 5e-324, 0.1][i % 4], latency_ms=-math.inf if i == 3 else 1 / 3,
                   input_tokens=2 ** 63 - 1 if i == 5 else i) for i in range(3 * ROWS_32)]
    write(c, records)
    assert stored(c) == records
    intact(c, schema)


def test_mixed_sets_and_sizes() -> None:
    """Sets of every size in one batch, interleaved: each record stored once, as given; small sets bound in full."""
    c = conn()
    texts = ["a", "it's", "é", "x" * 600, "b"]
    sizes = [ROWS_32 * 2 + ROWS_8 + 5, MIN_SET, MIN_SET - 1, ROWS_8 + 1, 1]
    records = []
    for round_ in range(max(sizes)):
        records += [rec(len(records), t) for t, n in zip(texts, sizes, strict=True) if round_ < n]
    write(c, records, math.nan)
    assert stored(c) == records


def test_plain_and_optional_rows_in_one_set() -> None:
    """Records that leave the optional columns empty take statements holding them as literals; the others bind
    them; in one batch, interleaved, each in every chunk size."""
    c = conn()
    plain = dict(ttft_ms=None, context_id=None, cached_tokens=0, cache_write_tokens=0, reasoning_tokens=0,
                 saved_usd=0.0)
    kinds = [{}, {"ttft_ms": 1.5}, {"context_id": "it's"}, {"cached_tokens": 3}, {"cache_write_tokens": 4},
             {"reasoning_tokens": 5}, {"saved_usd": 0.25}]
    records = [rec(i, "k", **{**plain, **(kinds[i % 14] if i % 14 < 7 else {})}) for i in range(14 * 20)]
    writer = write(c, records, math.nan)
    assert stored(c) == records
    assert sorted(key[-1] for key, statements in writer._memo.items() if statements) == [False, True]
    assert [r.ttft_ms for r in stored(c)][:3] == [None, 1.5, None]


def test_few_records_and_none() -> None:
    c = conn()
    few = [rec(i, "k", component=None, task_type=None, provider=None, model=None, downgraded_from=None,
               request_id=None, ttft_ms=None, context_id=None) for i in range(MIN_SET - 1)]
    write(c, few, math.nan)
    write(c, [])
    many = [rec(100 + i, "k", component=None, model=None, ttft_ms=None) for i in range(ROWS_32)]
    write(c, many, math.nan)
    assert stored(c) == few + many


def test_statements_are_remembered_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    c, writer = conn(), RowWriter()
    monkeypatch.setattr(sqlite_rows, "_MEMO_MAX", 4)
    for n in range(10):
        c.execute("BEGIN IMMEDIATE")
        writer.write(c, [rec(i, f"key{n}") for i in range(MIN_SET)])
        c.execute("COMMIT")
        assert len(writer._memo) <= 4
    assert c.execute("SELECT COUNT(*), COUNT(DISTINCT key_id) FROM usage_records").fetchone() == (10 * MIN_SET, 10)


def test_store_writes_and_lists_by_time(tmp_path: Path) -> None:
    """Through SqliteLedgerStore: ids may follow sets within a flush; the listing is newest first all the same."""
    async def run() -> tuple[list[UsageRecord], int]:
        store = SqliteLedgerStore(tmp_path / "usage.db")
        await store.open()
        try:
            records = [rec(i, ["a", "b'", "c"][i % 3]) for i in range(3 * ROWS_32 + 1)]
            await store.write(records)
            page, total = await store.records(UsageFilter(0, 2e9), limit=1000, offset=0)
            assert page == sorted(records, key=lambda r: -r.ts)
            return page, total
        finally:
            await store.close()

    page, total = asyncio.run(run())
    assert total == len(page) == 3 * ROWS_32 + 1
