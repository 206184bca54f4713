"""Instructions per usage record written by the SQLite ledger store (`SqliteLedgerStore.write`, its worker thread
included), counted by valgrind's callgrind around the measured flushes only: the ruler of rhetor/governance/
sqlite_packs.py (and of sqlite_rows.py, its fallback, where the JSON probe says no). Each flush holds `--batch`
records spread over `--sets` sets (keys), like a bench request's record (one attempt, no stream, no context).

    .venv/bin/python benchmarks/ledger_write.py [--batch 128] [--flushes 20] [--sets 1 4 64] [--shared-attempts]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhetor.governance.ledger import UsageRecord  # noqa: E402
from rhetor.governance.sqlite_store import SqliteLedgerStore  # noqa: E402

SHARED = [{"provider": "openai", "model": "gpt-5.4-mini", "outcome": "ok"}]


def record(i: int, sets: int, shared: bool = False) -> UsageRecord:
    """`shared`: the records share one `attempts` list, as the meter's of one attempt do (rhetor.governance.meter)."""
    attempts = SHARED if shared else [{"provider": "openai", "model": "gpt-5.4-mini", "outcome": "ok"}]
    return UsageRecord(1.7e9 + i / 1000, uuid.uuid4().hex, f"key_{i % sets}", None, "default", "openai", "openai",
                       "gpt-5.4-mini", attempts, 10 + i % 7, 20 + i % 5, cost_usd=1e-6 * (i % 11),
                       latency_ms=0.5 + i % 3)


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(os.getpid())], capture_output=True, check=False)


async def child(batch: int, flushes: int, sets: int, shared: bool) -> None:
    store = SqliteLedgerStore(Path(tempfile.mkdtemp(prefix="rhetor-ledger-bench-")) / "usage.db")
    await store.open()
    batches = [[record(k * batch + i, sets, shared) for i in range(batch)] for k in range(flushes + 3)]
    for b in batches[:3]:  # warm: statements prepared, memo filled
        await store.write(b)
    control("-i", "on")
    for b in batches[3:]:
        await store.write(b)
    control("-i", "off")
    control("-d")
    await store.close()


def measure(batch: int, flushes: int, sets: int, shared: bool) -> float:
    out = Path(tempfile.mkdtemp(prefix="rhetor-ledger-cg-")) / "cg"
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}.%p",
                    sys.executable, __file__, "--child", "--batch", str(batch), "--flushes", str(flushes),
                    "--sets", str(sets), *(["--shared-attempts"] if shared else [])], capture_output=True,
                   check=True, cwd=ROOT)
    best = 0
    for f in out.parent.glob("cg.*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                best = max(best, int(line.split()[1]))
    return best / (batch * flushes)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--flushes", type=int, default=20)
    ap.add_argument("--sets", type=int, nargs="+", default=[1, 4, 64])
    ap.add_argument("--shared-attempts", action="store_true",
                    help="the records share one attempts list, as the meter's of one attempt do")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        asyncio.run(child(args.batch, args.flushes, args.sets[0], args.shared_attempts))
        return
    for sets in args.sets:
        per = measure(args.batch, args.flushes, sets, args.shared_attempts)
        shared = ", attempts shared" if args.shared_attempts else ""
        print(f"flushes of {args.batch} records, {sets} set(s){shared}: {per / 1000:.1f}k instructions a record",
              flush=True)


if __name__ == "__main__":
    main()
