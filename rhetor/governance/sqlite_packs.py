"""Usage records packed in SQLite: one `usage_packs` row per set and flush (up to PACK_MAX records), the set's
repeated values once as columns, the records' varying values as one JSON array of arrays. A record costs ~5k fewer
instructions to write than a usage_rows row (benchmarks/ledger_write.py; README "Round 9, packed ledger").

Reading: the view `usage_records` (the schema's migration 3) is the old table's rows (`usage_rows`) UNION ALL the
packs' records, same columns and types, so a tool reading the file sees one table; the store's readers use
`source`, the same union with the filters inside each branch and a pack prefilter on the packs' time range
(lo, hi: indexed). A pack's records get ids below zero (`PACK_ID`), a usage_rows row's are above: `ORDER BY ts
DESC, id DESC` stays a total order.

Exactness: records go packed only if they read back as given (`PackWriter._packable`: finite floats, 64-bit ints,
str or None strings, no NUL) and only where this SQLite's JSON reads doubles back exactly (`capable`, checked once
a process); every other record is written as a usage_rows row (rhetor.governance.sqlite_rows). Purge rewrites the
packs straddling its cut so reads and counts stay exact (`purge`).

Runs on the store's worker thread. Knows the usage tables' columns and SQL; nothing of HTTP, fronts or prices.
"""

from __future__ import annotations

import math
import random
import sqlite3
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from rhetor.governance.ledger import UsageRecord
from rhetor.governance.sqlite_rows import OPTIONAL, SET, VARYING, RowWriter, grouped

PACK_MAX = 1000  # records a pack row holds: its JSON stays ~100 KB; ids leave room for 1,024
SPAN = 3600.0  # seconds a pack's records may span (hi - lo; wider: rows), so a time range finds its packs by lo
FIELDS = VARYING + OPTIONAL  # a packed record's JSON array, in this order
_REAL = ("ts", "cost_usd", "latency_ms", "ttft_ms", "saved_usd")  # REAL in usage_rows: CAST as its affinity does
# the record columns as SQL over a pack `p` and one of its records `j` (json_each)
PACKED: dict[str, str] = {
    "id": "p.id * 1024 + j.key - 4611686018427387904",  # PACK_ID: < 0 for any pack id below 2**52
    **{c: f"p.{c}" for c in SET},
    **{c: (f"CAST(json_extract(j.value, '$[{i}]') AS REAL)" if c in _REAL else f"json_extract(j.value, '$[{i}]')")
       for i, c in enumerate(FIELDS)}}
_ORDER = ("id", "ts", "request_id", "key_id", "component", "task_type", "front", "provider", "model", "attempts",
          "input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens", "estimated",
          "cost_usd", "unpriced", "latency_ms", "ttft_ms", "status", "fallback", "context_id", "cache_hit",
          "saved_usd", "downgraded_from")  # usage_rows' columns, as the old usage_records table had them
_PACKS_FROM = "usage_packs p, json_each(p.records) j"
MIGRATION = [  # migration 3 of rhetor.governance.sqlite_store
    "ALTER TABLE usage_records RENAME TO usage_rows",
    """CREATE TABLE usage_packs (id INTEGER PRIMARY KEY, lo REAL NOT NULL, hi REAL NOT NULL, n INTEGER NOT NULL,
        key_id TEXT NOT NULL, component TEXT, task_type TEXT, front TEXT NOT NULL, provider TEXT, model TEXT,
        attempts TEXT NOT NULL, estimated INTEGER NOT NULL, unpriced INTEGER NOT NULL, status TEXT NOT NULL,
        fallback INTEGER NOT NULL, cache_hit INTEGER NOT NULL, downgraded_from TEXT, records TEXT NOT NULL)""",
    "CREATE INDEX usage_packs_lo ON usage_packs (lo)",
    f"CREATE VIEW usage_records AS SELECT {', '.join(_ORDER)} FROM usage_rows UNION ALL "
    f"SELECT {', '.join(f'{PACKED[c]} AS {c}' for c in _ORDER)} FROM {_PACKS_FROM}",
]
_INSERT = (f"INSERT INTO usage_packs (lo, hi, n, {', '.join(SET)}, records) "
           f"VALUES ({', '.join('?' * (len(SET) + 4))})")
_STRINGS = frozenset((str, type(None)))

Cond = tuple[str, str, Any]  # (column, operator, value): a reader's filter, `column op ?`


def render(conds: Sequence[Cond], names: Mapping[str, str] | None = None) -> tuple[str, list[Any]]:
    """`conds` as one WHERE expression (AND) and its arguments, each column through `names` if given."""
    if names is None:
        return " AND ".join(f"{c} {op} ?" for c, op, _ in conds), [v for *_, v in conds]
    return " AND ".join(f"{names[c]} {op} ?" for c, op, _ in conds), [v for *_, v in conds]


def source(conds: Sequence[Cond], columns: Sequence[str], packs: bool = True) -> tuple[str, list[Any]]:
    """A FROM clause holding the records that match `conds`, with `columns` (usage_records' names, or constants
    such as "1"): the rows UNION ALL the packs' records, each branch filtered (the packs first by their time
    range), or without `packs` the rows alone."""
    where, args = render(conds)
    if not packs:
        return f"usage_rows WHERE {where}", args
    clauses: list[str] = []  # a pack holds records of [lo, hi], hi - lo <= SPAN: found by a range of its lo
    pack_args: list[Any] = []
    for c, op, v in conds:
        if c == "ts" and op == ">=":  # a record's ts read only where its pack straddles the bound
            clauses += ["p.lo >= ?", "p.hi >= ?", f"(p.lo >= ? OR {PACKED['ts']} >= ?)"]
            pack_args += [v - SPAN, v, v, v]
        elif c == "ts" and op == "<":
            clauses += ["p.lo < ?", f"(p.hi < ? OR {PACKED['ts']} < ?)"]
            pack_args += [v, v, v]
        else:
            clauses.append(f"{PACKED[c]} {op} ?")
            pack_args.append(v)
    pack_where = " AND ".join(clauses)
    return (f"(SELECT {', '.join(columns)} FROM usage_rows WHERE {where} UNION ALL "
            f"SELECT {', '.join(f'{PACKED[c]} AS {c}' if c in PACKED else c for c in columns)} FROM {_PACKS_FROM} "
            f"WHERE {pack_where})",
            args + pack_args)


class PackWriter:
    """Writes batches of UsageRecords into one connection's usage_packs, what cannot be packed exactly into
    usage_rows (through `rows`)."""

    def __init__(self, rows: RowWriter) -> None:
        self.rows = rows

    def write(self, conn: sqlite3.Connection, records: Sequence[UsageRecord]) -> None:
        """Insert `records` (inside the caller's transaction)."""
        dumps = orjson.dumps
        sets = grouped(records, split_plain=False)  # (each key ends with None: no PLAIN split here)
        packs: list[tuple[Any, ...]] = []
        rest: list[UsageRecord] = []
        for key, recs in sets.items():
            for i in range(0, len(recs), PACK_MAX):
                chunk = recs[i:i + PACK_MAX]
                rows = [(r.ts, r.request_id, r.input_tokens, r.output_tokens, r.cost_usd, r.latency_ms,
                         r.cached_tokens, r.cache_write_tokens, r.reasoning_tokens, r.ttft_ms, r.context_id,
                         r.saved_usd) for r in chunk]
                ts = _packable(rows)
                if ts is None:
                    rest += chunk
                    continue
                try:
                    data = dumps(rows, option=orjson.OPT_STRICT_INTEGER)  # ints of 53 bits at most
                except (TypeError, orjson.JSONEncodeError):  # e.g. a lone surrogate: usage_rows says what it is
                    rest += chunk
                    continue
                if b"\\u0000" in data:  # SQLite's JSON cuts a string at NUL (may also be an escaped "\\u0000")
                    rest += chunk
                    continue
                ordered = sorted(ts)  # (min and max cost ~1.4k instructions a call, sorting in order ~20 a value)
                lo, hi = ordered[0], ordered[-1]
                if hi - lo > SPAN:  # a backlog, or a request of more than SPAN: found by its ts in usage_rows
                    rest += chunk
                    continue
                packs.append((lo, hi, len(rows), *key[:-1], data.decode()))
        if packs:
            conn.executemany(_INSERT, packs)
        if rest:
            self.rows.write(conn, rest)


def _packable(rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The rows' timestamps if every value reads back from JSON as usage_rows would give it, else None: floats
    finite (NaN and inf are no JSON), ints ints, strings str or None (else TEXT affinity would turn them into
    text). A column or a few at a time, in C: a few hundred instructions a record where a check per value would
    cost ~3k."""
    try:
        (ts, request_id, inputs, outputs, cost, latency, cached, cache_write, reasoning, ttft, context_id,
         saved) = zip(*rows, strict=True)
        if not math.isfinite(sum(ts + cost + latency + saved) + sum(filter(None, ttft))):
            return None
        ints = inputs + outputs + cached + cache_write + reasoning
        if type(sum(ints)) is not int:  # (beyond 53 bits: orjson's OPT_STRICT_INTEGER in `write` says no)
            return None
        if not _STRINGS.issuperset(map(type, request_id + context_id)):
            return None
    except (TypeError, OverflowError):  # a None, str or other where a number belongs
        return None
    return ts


def purge(conn: sqlite3.Connection, before: float) -> int:
    """Delete the records older than `before` (inside the caller's transaction); how many. A pack straddling
    `before` is rewritten without its older records (its JSON through orjson, exactly), so every read and count
    stays a plain filter on ts and the purged records are gone from the file, not hidden. (With lo < before the
    packs' lo index finds the old packs; once those with hi < before are gone, what it finds straddles.)"""
    n = conn.execute("DELETE FROM usage_rows WHERE ts < ?", (before,)).rowcount
    n += int(conn.execute("SELECT COALESCE(SUM(n), 0) FROM usage_packs WHERE lo < ? AND hi < ?",
                          (before, before)).fetchone()[0])
    conn.execute("DELETE FROM usage_packs WHERE lo < ? AND hi < ?", (before, before))
    for pack, data in conn.execute("SELECT id, records FROM usage_packs WHERE lo < ?", (before,)).fetchall():
        records = orjson.loads(data)
        keep = [r for r in records if r[0] >= before]
        n += len(records) - len(keep)
        conn.execute("UPDATE usage_packs SET lo = ?, n = ?, records = ? WHERE id = ?",
                     (min(r[0] for r in keep), len(keep), orjson.dumps(keep).decode(), pack))
    return n


# doubles SQLite 3.40.1 misreads as SQL literals (its own decimal parser: benchmarks/ledger_layout.py floats)
_MISREAD = ("0x1.faba018013d03p+262", "0x1.3007f0d7e1a47p+938", "0x1.66afcec509387p+467", "0x1.402013053979fp+373",
            "0x1.88a21259d6e05p+931", "0x1.598d73959b68fp+965", "0x1.87cc9abd80a33p+872", "0x1.d9149d38877d6p+928",
            "0x1.d2f1a747eefeep+689", "0x1.78c949b0466b7p+632", "0x1.8e1381c8249e6p+553", "0x1.c0edb90fb5050p+592")
_CAPABLE: dict[str, tuple[bool, bool]] = {}  # sqlite3.sqlite_version -> capable()'s answer (one library a process)


def capable(conn: sqlite3.Connection) -> tuple[bool, bool]:
    """(whether this SQLite has the JSON functions the packs need, whether its JSON reads doubles back exactly):
    checked once a process (~30 ms), on ~4.5k values: random bit patterns, ledger-like times and costs, edge cases
    and doubles SQLite's literal parser gets wrong."""
    version = sqlite3.sqlite_version
    if version not in _CAPABLE:
        try:
            conn.execute("SELECT json_extract(j.value, '$[0]') FROM json_each('[[1]]') j").fetchall()
        except sqlite3.Error:
            _CAPABLE[version] = (False, False)
            return _CAPABLE[version]
        _CAPABLE[version] = (True, _exact(conn))
    return _CAPABLE[version]


def _exact(conn: sqlite3.Connection) -> bool:
    rng = random.Random(9)
    values = [struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(1500)]
    values += [1.7e9 + rng.random() * 1e8 for _ in range(1500)] + [rng.random() * 10.0 ** -rng.randrange(12)
                                                                   for _ in range(1500)]
    values += [0.1 + 0.2, 1e-7, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 2.0 ** 53 + 2, -0.0,
               9007199254740993.0, 0.30000000000000004, 1 / 3, 2 / 3, 1e22, 1e23, 123456.789e-300]
    values += [float.fromhex(h) for h in _MISREAD]
    values = [v for v in values if math.isfinite(v)]
    sql = f"SELECT {PACKED['ts']} FROM json_each(?) j ORDER BY j.key"
    back = [r[0] for r in conn.execute(sql, (orjson.dumps([[v] for v in values]).decode(),))]
    return back == values


__all__ = ["FIELDS", "MIGRATION", "PACKED", "PACK_MAX", "Cond", "PackWriter", "capable", "purge", "render",
           "source"]
