"""The usage ledger's physical layout in SQLite, measured for a next round (issue 9 item 9): what a record's write
costs (callgrind, instructions a record, flushes of `--batch` records of one set, the meter's shared attempts list)
in the current table (rhetor.governance.sqlite_rows), without its `ts` index, and "packed" (one row per set and
flush: the set's values once, the records' varying values as one JSON array); what a summary scan costs to read
each way (CPU seconds over `--rows` records); and whether this SQLite's JSON reads floats back exactly (the packed
layout's condition: SQL literals are misrounded by SQLite's own decimal parser, sqlite_rows binds those).

    .venv/bin/python benchmarks/ledger_layout.py write [--batch 128]
    .venv/bin/python benchmarks/ledger_layout.py read [--rows 200000]
    .venv/bin/python benchmarks/ledger_layout.py floats
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhetor.governance.ledger import UsageRecord  # noqa: E402
from rhetor.governance.sqlite_rows import RowWriter  # noqa: E402
from rhetor.governance.sqlite_store import _NULL, MIGRATIONS  # noqa: E402

ATTEMPTS = [{"provider": "openai", "model": "gpt-5.4-mini", "outcome": "ok"}]
PACKS = ("CREATE TABLE usage_packs (id INTEGER PRIMARY KEY, lo REAL NOT NULL, hi REAL NOT NULL, key_id TEXT, "
         "component TEXT, task_type TEXT, front TEXT, provider TEXT, model TEXT, attempts TEXT, estimated INTEGER, "
         "unpriced INTEGER, status TEXT, fallback INTEGER, cache_hit INTEGER, downgraded_from TEXT, rows TEXT)",
         "CREATE INDEX usage_packs_hi ON usage_packs (hi)")
VIEW = ("CREATE VIEW packed AS SELECT p.id * 1000000 + j.key AS id, j.value ->> 0 AS ts, j.value ->> 1 AS request_id, "
        "key_id, component, task_type, front, provider, model, attempts, j.value ->> 2 AS input_tokens, "
        "j.value ->> 3 AS output_tokens, j.value ->> 6 AS cached_tokens, j.value ->> 7 AS cache_write_tokens, "
        "j.value ->> 8 AS reasoning_tokens, estimated, j.value ->> 4 AS cost_usd, unpriced, "
        "j.value ->> 5 AS latency_ms, "
        "j.value ->> 9 AS ttft_ms, status, fallback, j.value ->> 10 AS context_id, cache_hit, "
        "j.value ->> 11 AS saved_usd, downgraded_from FROM usage_packs p, json_each(p.rows) j")


def record(i: int) -> UsageRecord:
    return UsageRecord(1.7e9 + i / 1000, uuid.uuid4().hex, "key_0", None, "default", "openai", "openai",
                       "gpt-5.4-mini", ATTEMPTS, 10 + i % 7, 20 + i % 5, cost_usd=1e-6 * (i % 11),
                       latency_ms=0.5 + i % 3)


def write_packed(conn: sqlite3.Connection, records: list[UsageRecord]) -> None:
    """One row per set: grouped as sqlite_rows groups them, the varying values dumped as one JSON array."""
    sets: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    last: Any = None
    text = ""
    for r in records:
        if r.attempts is not last:
            last, text = r.attempts, orjson.dumps(r.attempts).decode()
        key = (r.key_id, r.component, r.task_type, r.front, r.provider, r.model, text, int(r.estimated),
               int(r.unpriced), r.status, int(r.fallback), int(r.cache_hit), r.downgraded_from)
        row = (r.ts, r.request_id, r.input_tokens, r.output_tokens, r.cost_usd, r.latency_ms, r.cached_tokens,
               r.cache_write_tokens, r.reasoning_tokens, r.ttft_ms, r.context_id, r.saved_usd)
        found = sets.get(key)
        if found is None:
            sets[key] = [row]
        else:
            found.append(row)
    conn.executemany("INSERT INTO usage_packs (lo, hi, key_id, component, task_type, front, provider, model, "
                     "attempts, estimated, unpriced, status, fallback, cache_hit, downgraded_from, rows) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [(min(r[0] for r in rows), max(r[0] for r in rows), *key, orjson.dumps(rows))
                      for key, rows in sets.items()])


def connect(path: str, layout: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for step in MIGRATIONS:
        for statement in step:
            conn.execute(statement)
    if layout == "noindex":
        conn.execute("DROP INDEX usage_records_ts")
    if layout == "packed":
        for statement in (*PACKS, VIEW):
            conn.execute(statement)
    return conn


def child_write(layout: str, batch: int, flushes: int) -> None:
    conn, writer = connect(tempfile.mkdtemp(prefix="rhetor-layout-") + "/usage.db", layout), RowWriter(_NULL)
    batches = [[record(k * batch + i) for i in range(batch)] for k in range(flushes + 3)]
    for k, b in enumerate(batches):
        if k == 3:
            subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=False)
        conn.execute("BEGIN IMMEDIATE")
        write_packed(conn, b) if layout == "packed" else writer.write(conn, b)
        conn.execute("COMMIT")
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True, check=False)
    subprocess.run(["callgrind_control", "-d", str(os.getpid())], capture_output=True, check=False)


def write(batch: int, flushes: int) -> None:
    for layout in ("current", "noindex", "packed"):
        out = Path(tempfile.mkdtemp(prefix="rhetor-layout-cg-")) / "cg"
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
                        sys.executable, __file__, "child", "--layout", layout, "--batch", str(batch), "--flushes",
                        str(flushes)], capture_output=True, check=True, cwd=ROOT)
        total = max(int(line.split()[1]) for f in out.parent.glob("cg.*")
                    for line in f.read_text(errors="replace").splitlines() if line.startswith("totals:"))
        print(f"write {layout:8} {total / (batch * flushes) / 1e3:6.1f}k instructions a record", flush=True)


def read(rows: int) -> None:
    conn = connect(":memory:", "packed")
    records = [record(i) for i in range(rows)]
    conn.execute("BEGIN")
    RowWriter(_NULL).write(conn, records)
    for i in range(0, rows, 1000):
        write_packed(conn, records[i:i + 1000])
    conn.execute("COMMIT")
    sql = ("SELECT provider || '/' || model, input_tokens, output_tokens, cached_tokens, cache_write_tokens, "
           "reasoning_tokens, cost_usd, status, unpriced, estimated, latency_ms, fallback FROM {} "
           "WHERE ts >= ? AND ts < ? ORDER BY 1, latency_ms")
    for source in ("usage_records", "packed"):
        began = time.process_time()
        n = len(conn.execute(sql.format(source), (0, 1e10)).fetchall())
        print(f"read {source:14} {n} records, summary scan {time.process_time() - began:.3f} s CPU", flush=True)


def floats() -> None:
    rng = random.Random(1)
    values = [struct.unpack("d", struct.pack("Q", rng.getrandbits(62) | (1 << 62)))[0] for _ in range(100_000)]
    values = [v for v in values if math.isfinite(v)] + [1.7e9 + rng.random() * 1e7 for _ in range(100_000)]
    conn = sqlite3.connect(":memory:")
    by_json = [r[0] for r in conn.execute("SELECT j.value ->> 0 FROM json_each(?) j ORDER BY j.key",
                                          (orjson.dumps([[v] for v in values]).decode(),))]
    by_literal: list[float] = []
    for i in range(0, len(values), 500):
        by_literal += conn.execute("SELECT " + ", ".join(repr(v) for v in values[i:i + 500])).fetchone()
    print(f"SQLite {sqlite3.sqlite_version}: of {len(values)} doubles, JSON misread "
          f"{sum(a != b for a, b in zip(values, by_json, strict=True))}, SQL literals misread "
          f"{sum(a != b for a, b in zip(values, by_literal, strict=True))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["write", "read", "floats", "child"])
    ap.add_argument("--layout", default="current")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--flushes", type=int, default=20)
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    if args.what == "child":
        child_write(args.layout, args.batch, args.flushes)
    elif args.what == "write":
        write(args.batch, args.flushes)
    elif args.what == "read":
        read(args.rows)
    else:
        floats()


if __name__ == "__main__":
    main()
