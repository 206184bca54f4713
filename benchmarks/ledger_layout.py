"""The usage ledger's physical layout in SQLite (issue 9 item 9), measured on the real code: what a record's write
costs (callgrind, instructions a record, flushes of `--batch` records of one set, the meter's shared attempts list)
as rows (rhetor.governance.sqlite_rows, usage_rows), rows without their `ts` index, and packed (rhetor.governance.
sqlite_packs: one usage_packs row per set and flush, the set's values once, the records' varying values as one
JSON array: the store's layout since round 9); what a summary scan costs to read each way (CPU seconds over
`--rows` records, the store's own `summarize`); and whether this SQLite's JSON reads floats back exactly (the
packed layout's condition, checked by the store at start-up: SQL literals are misrounded by SQLite's own decimal
parser, sqlite_rows binds those).

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
from dataclasses import replace
from functools import partial
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhetor.governance import sqlite_packs  # noqa: E402
from rhetor.governance.ledger import UsageFilter, UsageRecord  # noqa: E402
from rhetor.governance.sqlite_packs import PackWriter  # noqa: E402
from rhetor.governance.sqlite_rows import RowWriter  # noqa: E402
from rhetor.governance.sqlite_store import _NULL, MIGRATIONS, summarize  # noqa: E402

ATTEMPTS = [{"provider": "openai", "model": "gpt-5.4-mini", "outcome": "ok"}]
def record(i: int) -> UsageRecord:
    return UsageRecord(1.7e9 + i / 1000, uuid.uuid4().hex, "key_0", None, "default", "openai", "openai",
                       "gpt-5.4-mini", ATTEMPTS, 10 + i % 7, 20 + i % 5, cost_usd=1e-6 * (i % 11),
                       latency_ms=0.5 + i % 3)


def connect(path: str, layout: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    for step in MIGRATIONS:
        for statement in step:
            conn.execute(statement)
    if layout == "noindex":
        conn.execute("DROP INDEX usage_records_ts")  # (usage_rows' since migration 3 renamed its table)
    return conn


def child_write(layout: str, batch: int, flushes: int) -> None:
    conn = connect(tempfile.mkdtemp(prefix="rhetor-layout-") + "/usage.db", layout)
    writer: RowWriter | PackWriter = PackWriter(RowWriter(_NULL)) if layout == "packed" else RowWriter(_NULL)
    batches = [[record(k * batch + i) for i in range(batch)] for k in range(flushes + 3)]
    for k, b in enumerate(batches):
        if k == 3:
            subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=False)
        conn.execute("BEGIN IMMEDIATE")
        writer.write(conn, b)
        conn.execute("COMMIT")
    subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], capture_output=True, check=False)
    subprocess.run(["callgrind_control", "-d", str(os.getpid())], capture_output=True, check=False)


def write(batch: int, flushes: int) -> None:
    for layout in ("rows", "noindex", "packed"):
        out = Path(tempfile.mkdtemp(prefix="rhetor-layout-cg-")) / "cg"
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
                        sys.executable, __file__, "child", "--layout", layout, "--batch", str(batch), "--flushes",
                        str(flushes)], capture_output=True, check=True, cwd=ROOT)
        total = max(int(line.split()[1]) for f in out.parent.glob("cg.*")
                    for line in f.read_text(errors="replace").splitlines() if line.startswith("totals:"))
        print(f"write {layout:8} {total / (batch * flushes) / 1e3:6.1f}k instructions a record", flush=True)


def read(rows: int) -> None:
    """The same records twice, as rows and as packs of 1,000 (two sets), read by the store's summary scan."""
    conn = connect(":memory:", "rows")
    records = [record(i) for i in range(rows)]
    conn.execute("BEGIN")
    RowWriter(_NULL).write(conn, records)
    for i in range(0, rows, 1000):
        PackWriter(RowWriter(_NULL)).write(conn, [replace(r, key_id="packed") for r in records[i:i + 1000]])
    conn.execute("COMMIT")
    for name, source in (("rows", partial(sqlite_packs.source, packs=False)), ("packed", sqlite_packs.source)):
        for flt in (UsageFilter(0, 1e10, key="key_0"), UsageFilter(0, 1e10, key="packed")):
            began = time.process_time()
            n = summarize(conn, flt, ["model"], source)["totals"]["requests"]
            print(f"read {name:6} source, {flt.key:7} records: {n} records, summary scan "
                  f"{time.process_time() - began:.3f} s CPU", flush=True)


def floats() -> None:
    rng = random.Random(1)
    values = [struct.unpack("d", struct.pack("Q", rng.getrandbits(62) | (1 << 62)))[0] for _ in range(100_000)]
    values = [v for v in values if math.isfinite(v)] + [1.7e9 + rng.random() * 1e7 for _ in range(100_000)]
    conn = sqlite3.connect(":memory:")
    by_json = [r[0] for r in conn.execute(f"SELECT {sqlite_packs.PACKED['ts']} FROM json_each(?) j ORDER BY j.key",
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
    ap.add_argument("--layout", default="rows")
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
