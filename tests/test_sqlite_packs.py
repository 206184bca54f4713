"""The usage ledger's packed layout in SQLite (rhetor.governance.sqlite_packs): records read back through the store
exactly as the row layout gives them (values and types), whatever they hold; a database of the old layout migrates
and reads together with new packs (paging across both); purge cuts through a pack; and the row layout takes over
where this SQLite's JSON cannot be trusted."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rhetor.errors import ConfigError
from rhetor.governance import sqlite_packs
from rhetor.governance.ledger import GROUPS, UsageFilter, UsageRecord
from rhetor.governance.sqlite_packs import PACK_MAX, SPAN, PackWriter
from rhetor.governance.sqlite_rows import RowWriter
from rhetor.governance.sqlite_store import COLUMNS, MIGRATIONS, SqliteLedgerStore

HOSTILE = ["it's", "'", '"', "\\", "a\\u0000b", "é", "☃'; --", "\u2028", "😀", "", " ", "null", "[1]", "x" * 600]
T0 = 1.7e9
ALL = UsageFilter(0, 2e9)


def rec(i: int, **kw: Any) -> UsageRecord:
    r = UsageRecord(T0 + i / 7, f"req-{i}", f"key{i % 3}", "comp", "chat", "openai", "openai", "gpt",
                    [{"provider": "openai", "model": "gpt", "outcome": "ok"}], 10 + i, 20 + i, latency_ms=0.5 + i,
                    cost_usd=i * 1e-7)
    for name, value in kw.items():
        setattr(r, name, value)
    return r


def wild(rng: random.Random, i: int) -> UsageRecord:
    """A record with random values of every kind the columns take, the awkward ones often."""
    def text() -> str | None:
        return rng.choice([None, rng.choice(HOSTILE), f"v{rng.randrange(3)}"])

    def real() -> float:
        return rng.choice([0.1 + 0.2, 1e-7, 1 / 3, 5e-324, 1.7976931348623157e308, -0.0, 0.0, 2.5, 1e22,
                           rng.random() * 10 ** rng.randrange(-9, 9)])

    def count() -> int:
        return rng.choice([0, 1, 2 ** 31, 2 ** 53 - 1, rng.randrange(10 ** 6)])

    return UsageRecord(T0 + rng.random() * 100, text(), rng.choice(["k", "it's", "é"]), text(), text(),
                       rng.choice(["openai", "native"]), text(), text(),
                       rng.choice([[], [{"provider": "p", "model": "m", "outcome": "ok"}]]), count(), count(),
                       count(), count(), count(), rng.random() < 0.2, real(), rng.random() < 0.2, real(),
                       rng.choice([None, real()]), rng.choice(["ok", "cancelled", "timeout"]), rng.random() < 0.2,
                       text(), rng.random() < 0.2, real(), text())


def typed(records: list[UsageRecord]) -> list[list[tuple[type, Any]]]:
    return [[(type(v), v) for v in (getattr(r, c) for c in COLUMNS)] for r in records]


@pytest.fixture
def rows_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This SQLite's JSON reads doubles back inexactly (forced): records are written as rows."""
    monkeypatch.setattr(sqlite_packs, "capable", lambda conn: (True, False))
    yield


def run(path: Path, *calls: Any) -> list[Any]:
    """Open a store at `path`, await each call(store) in turn, close it: the results."""
    async def go() -> list[Any]:
        store = SqliteLedgerStore(path)
        await store.open()
        try:
            return [await call(store) for call in calls]
        finally:
            await store.close()

    return asyncio.run(go())


def everything(store: SqliteLedgerStore, flt: UsageFilter = ALL) -> Any:
    async def page() -> tuple[list[UsageRecord], int]:
        return await store.records(flt, limit=100_000, offset=0)
    return page()


def tables(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as c:
        return (c.execute("SELECT COUNT(*) FROM usage_rows").fetchone()[0],
                c.execute("SELECT COALESCE(SUM(n), 0) FROM usage_packs").fetchone()[0])


def by_time(records: list[UsageRecord]) -> list[UsageRecord]:
    return sorted(records, key=lambda r: -r.ts)


def test_round_trip_is_exact_and_typed_as_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    records = [wild(rng, i) for i in range(600)]
    records += [rec(1000 + i, request_id=None, component=None, task_type=None, provider=None, model=None,
                    ttft_ms=None, context_id=None, downgraded_from=None) for i in range(20)]
    records.sort(key=lambda r: r.ts)  # distinct times: the listing's order is the records'
    packed = run(tmp_path / "packed.db", lambda s: s.write(records), everything)[1]
    rows, packs = tables(tmp_path / "packed.db")
    assert packs > 500 and rows == len(records) - packs  # packed, but for what cannot be (big ints, NUL)
    monkeypatch.setattr(sqlite_packs, "capable", lambda conn: (True, False))
    by_rows = run(tmp_path / "rows.db", lambda s: s.write(records), everything)[1]
    assert tables(tmp_path / "rows.db") == (len(records), 0)
    assert packed[0] == by_rows[0] == by_time(records)
    assert typed(packed[0]) == typed(by_rows[0])  # ints as ints, floats as floats, None as None, flags as bools


@pytest.mark.parametrize("odd", [{"cost_usd": math.nan}, {"latency_ms": math.inf}, {"ttft_ms": -math.inf},
                                 {"saved_usd": math.nan}, {"input_tokens": 2 ** 63 - 1},
                                 {"reasoning_tokens": -(2 ** 60)}, {"output_tokens": 2.0},
                                 {"request_id": 7}, {"context_id": "a\x00b"},
                                 {"request_id": "\ud800"}, {"ts": T0 + 2 * SPAN}])
def test_what_cannot_be_packed_goes_to_rows(odd: dict[str, Any], tmp_path: Path) -> None:
    """A set's records whose values would not read back from JSON as rows give them are written as rows; the other
    sets of the flush still go packed."""
    odd_set = [rec(i, key_id="odd") for i in range(5)]
    for name, value in odd.items():
        setattr(odd_set[2], name, value)
    plain = [rec(10 + i, key_id="plain") for i in range(5)]
    c = sqlite3.connect(":memory:", isolation_level=None)
    for step in MIGRATIONS:
        for statement in step:
            c.execute(statement)
    c.execute("BEGIN")
    try:
        PackWriter(RowWriter(math.nan)).write(c, odd_set + plain)
    except (sqlite3.Error, OverflowError, UnicodeEncodeError):  # what the row layout also refuses
        c.execute("ROLLBACK")
        return
    c.execute("COMMIT")
    assert c.execute("SELECT key_id, n FROM usage_packs").fetchall() == [("plain", 5)]
    assert c.execute("SELECT COUNT(*) FROM usage_rows WHERE key_id = 'odd'").fetchone() == (5,)


def old_database(path: Path, records: list[UsageRecord]) -> None:
    """A usage.db as the row layout left it: schema version 2, records in the table usage_records."""
    c = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:2]:
        for statement in step:
            c.execute(statement)
    c.execute("PRAGMA user_version = 2")
    for r in records:
        c.execute(f"INSERT INTO usage_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                  (r.ts, r.request_id, r.key_id, r.component, r.task_type, r.front, r.provider, r.model,
                   '[{"provider":"openai","model":"gpt","outcome":"ok"}]', r.input_tokens, r.output_tokens,
                   r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens, r.estimated, r.cost_usd, r.unpriced,
                   r.latency_ms, r.ttft_ms, r.status, r.fallback, r.context_id, r.cache_hit, r.saved_usd,
                   r.downgraded_from))
    c.close()


def test_old_database_migrates_and_reads_with_new_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = [rec(i, ts=T0 + i // 4) for i in range(0, 200, 2)]  # ties in ts, within and across the layouts
    new = [rec(i, ts=T0 + i // 4, component="new" if i % 3 else "comp") for i in range(1, 200, 2)]
    old_database(tmp_path / "usage.db", old)
    pages: list[UsageRecord] = []

    async def paged(store: SqliteLedgerStore) -> None:
        for offset in range(0, 200, 17):
            page, total = await store.records(ALL, limit=17, offset=offset)
            assert total == 200
            pages.extend(page)

    flt = UsageFilter(T0 + 10, T0 + 40, component="comp")
    got = run(tmp_path / "usage.db", lambda s: s.write(new), paged, lambda s: s.summary(ALL, ["component", "day"]),
              lambda s: s.spend("component", "comp", [T0, T0 + 25], 2e9), lambda s: everything(s, flt))
    assert tables(tmp_path / "usage.db") == (100, 100)
    everyone = old + new
    assert sorted(pages, key=lambda r: r.request_id or "") == sorted(everyone, key=lambda r: r.request_id or "")
    assert [r.ts for r in pages] == sorted((r.ts for r in everyone), reverse=True)  # paging stable: no repeats
    summary = got[2]
    assert summary["totals"]["requests"] == 200
    assert {b["component"]: b["requests"] for b in summary["buckets"]} == {
        "comp": 100 + sum(1 for r in new if r.component == "comp"), "new": sum(1 for r in new if r.component == "new")}
    comp = [r for r in everyone if r.component == "comp"]
    assert got[3] == pytest.approx([sum(r.cost_usd for r in comp), sum(r.input_tokens + r.output_tokens for r in comp),
                                    sum(r.cost_usd for r in comp if r.ts >= T0 + 25),
                                    sum(r.input_tokens + r.output_tokens for r in comp if r.ts >= T0 + 25)])
    expected = [r for r in everyone if r.component == "comp" and T0 + 10 <= r.ts < T0 + 40]
    assert sorted(got[4][0], key=lambda r: r.request_id or "") == sorted(expected, key=lambda r: r.request_id or "")
    with sqlite3.connect(tmp_path / "usage.db") as c:  # the view: the old table's columns, both layouts
        assert c.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM usage_records").fetchone() == (200, 200)
        assert [d[0] for d in c.execute("SELECT * FROM usage_records").description] == ["id", *COLUMNS[:23],
                                                                                        "saved_usd", COLUMNS[24]]


def test_summaries_and_filters_match_the_row_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    records = [wild(rng, i) for i in range(400)] + [rec(i, ts=T0 + i * 50.0) for i in range(100)]
    filters = [ALL, UsageFilter(T0 + 20, T0 + 60), UsageFilter(T0 + 1000, T0 + 2000), UsageFilter(0, T0 + 30.5)]
    filters += [UsageFilter(0, 2e9, **{f: v}) for f, v in (("component", "v1"), ("model", "openai/gpt"),
                                                             ("model", "v2"), ("model", "v0/v1"), ("provider", "v0"),
                                                             ("key", "it's"), ("task", "é"), ("front", "native"),
                                                             ("status", "timeout"))]
    calls: list[Any] = [lambda s: s.write(records)]
    for flt in filters:
        calls += [lambda s, f=flt: s.summary(f, list(GROUPS[:3])), lambda s, f=flt: s.summary(f, ["day", "hour"]),
                  lambda s, f=flt: s.summary(f, ["minute", "front", "status"]), lambda s, f=flt: s.summary(f, []),
                  lambda s, f=flt: everything(s, f), lambda s, f=flt: s.records(f, limit=7, offset=3)]
    calls += [lambda s: s.spend(None, None, [T0, T0 + 50, T0 + 2000], 2e9),
              lambda s: s.spend("key_id", "k", [T0 + 10], T0 + 90)]
    packed = run(tmp_path / "packed.db", *calls)
    monkeypatch.setattr(sqlite_packs, "capable", lambda conn: (True, False))
    by_rows = run(tmp_path / "rows.db", *calls)
    assert tables(tmp_path / "packed.db")[1] > 300
    for a, b in zip(packed[1:], by_rows[1:], strict=True):
        assert a == b


def test_purge_cuts_through_a_pack(tmp_path: Path) -> None:
    # one set: packs of 1000, 1000, 1000 and 10
    records = [rec(i, ts=T0 + i, key_id="k") for i in range(3 * PACK_MAX + 10)]
    old = [rec(10_000 + i, ts=T0 + i + 0.5) for i in range(5)]
    old_database(tmp_path / "usage.db", old)
    before = T0 + 1500.5
    got = run(tmp_path / "usage.db", lambda s: s.write(records), lambda s: s.purge(before), everything,
              lambda s: s.summary(ALL, []), lambda s: s.purge(before))
    assert got[1] == 1501 + 5 and got[4] == 0
    assert got[2] == (by_time(records[1501:]), len(records) - 1501)
    assert got[3]["totals"]["requests"] == len(records) - 1501
    with sqlite3.connect(tmp_path / "usage.db") as c:
        assert c.execute("SELECT lo, hi, n FROM usage_packs ORDER BY lo").fetchall() == [
            (T0 + 1501, T0 + 1999, 499), (T0 + 2000, T0 + 2999, 1000), (T0 + 3000, T0 + 3009, 10)]


def test_large_flush_packs_are_bounded(tmp_path: Path) -> None:
    records = [rec(i, ts=T0 + i / 1000, key_id="k") for i in range(2 * PACK_MAX + 1)]
    got = run(tmp_path / "usage.db", lambda s: s.write(records), everything)
    assert got[1] == (by_time(records), len(records))
    with sqlite3.connect(tmp_path / "usage.db") as c:
        assert c.execute("SELECT n FROM usage_packs ORDER BY id").fetchall() == [(1000,), (1000,), (1,)]


def test_inexact_json_falls_back_to_rows(tmp_path: Path, rows_only: None) -> None:
    records = [rec(i) for i in range(50)]
    got = run(tmp_path / "usage.db", lambda s: s.write(records), everything, lambda s: s.purge(T0 + 3))
    assert got[1] == (by_time(records), 50) and got[2] == 21
    assert tables(tmp_path / "usage.db") == (29, 0)


def test_without_json_functions_rows_are_read_and_packs_refused(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [rec(i) for i in range(10)]
    monkeypatch.setattr(sqlite_packs, "capable", lambda conn: (False, False))
    got = run(tmp_path / "rows.db", lambda s: s.write(rows), everything, lambda s: s.summary(ALL, ["model"]),
              lambda s: s.spend(None, None, [0], 2e9))
    assert got[1] == (by_time(rows), 10) and got[2]["totals"]["requests"] == 10 and got[3][0] > 0
    monkeypatch.undo()
    run(tmp_path / "packed.db", lambda s: s.write(rows))
    monkeypatch.setattr(sqlite_packs, "capable", lambda conn: (False, False))
    with pytest.raises(ConfigError, match="packed usage records"):
        run(tmp_path / "packed.db")


def test_this_sqlite_is_capable() -> None:
    """The check itself, on this machine's SQLite (3.40: JSON reads doubles exactly; its SQL literals do not)."""
    with sqlite3.connect(":memory:") as c:
        assert sqlite_packs.capable(c) == (True, True)


def test_the_check_sees_an_inexact_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Doubles through text of 15 significant digits (SQLite's REAL to TEXT): the probe says so."""
    monkeypatch.setitem(sqlite_packs.PACKED, "ts", "CAST(CAST(json_extract(j.value, '$[0]') AS TEXT) AS REAL)")
    with sqlite3.connect(":memory:") as c:
        assert sqlite_packs._exact(c) is False
