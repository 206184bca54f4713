"""Stored-history benchmark: Rhetor's resident memory, chat req/s with a context, and search latency after
10k, 100k and 1M stored messages (issue: "memory stays flat as conversations accumulate").

The database is filled directly with SQL (synthetic ~200-character messages in `--contexts` contexts, each
message with a random unit vector of the simulated embedder), so 1M messages take a minute, not a day; the
FTS insert trigger is dropped during the fill and put back after, so lexical search sees none of them (the
embedder is on, so nothing here uses it). Each size grows the same database. For each size a fresh
`python -m rhetor` (pinned to CPU 0, simulated provider with delay 0, `RHETOR_EMBEDDER=simulated`) is
started on it; the script waits until its indexer is idle, measures search p50 over HTTP in one context,
one component and all contexts, then drives `POST /api/v1/chat` with a `context_id` (`--hot` contexts,
`--concurrency` connections, `--seconds`) and reads the server's RSS.

    .venv/bin/python benchmarks/stored.py [--sizes 10000 100000 1000000] [--seconds 5] [--dir /tmp/rhetor-stored]
    .venv/bin/python benchmarks/stored.py --root /tmp/rhetor-before ...   # the server from another checkout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import run_load
from run import free_port, pinned

ROOT = Path(__file__).resolve().parent.parent
MODEL, DIM = "simulated/hashed-bow-256", 256  # rhetor.context.embedder.SimulatedEmbedder
WORDS = ("deploy pipeline migration rollout staging database password vault rotate cluster node latency budget "
         "invoice customer ticket schedule review design memory vector search window token cache index").split()


def _text(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=28))  # ~200 characters, ~50 estimated tokens


def populate(db: Path, target: int, contexts: int, root: Path) -> int:
    """Grow the database at `db` to `target` messages (turns round-robin over the contexts); returns the count."""
    if not db.exists():  # the schema from the server's own migrations
        code = ("import asyncio, sys; from pathlib import Path; from rhetor.context import SqliteContextStore\n"
                "async def m():\n s = SqliteContextStore(Path(sys.argv[1])); await s.open(); await s.close()\n"
                "asyncio.run(m())")
        subprocess.run([sys.executable, "-c", code, str(db)], cwd=root, check=True)
    conn = sqlite3.connect(db, isolation_level=None)
    (have,) = conn.execute("SELECT COUNT(*) FROM messages").fetchone()
    if have >= target:
        conn.close()
        return int(have)
    (trigger,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'messages_fts_insert'").fetchone()
    rng = np.random.default_rng(have)
    now = "2026-01-01T00:00:00+00:00"
    conn.execute("DROP TRIGGER messages_fts_insert")
    conn.execute("BEGIN")
    conn.executemany("INSERT OR IGNORE INTO contexts (id, created_at, updated_at, metadata) VALUES (?, ?, ?, ?)",
                     [(f"ergon:ctx-{c}", now, now, '{"component": "ergon"}') for c in range(contexts)])
    (next_id,) = conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM messages").fetchone()
    n, started = int(have), time.monotonic()
    while n < target:
        batch = min(20_000, target - n) // 2 * 2 or 2
        rows, vecs = [], rng.standard_normal((batch, DIM)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for i in range(0, batch, 2):
            turn_no = (n + i) // (2 * contexts) + 1
            cid = f"ergon:ctx-{(n + i) // 2 % contexts}"
            rows.append((next_id + i, cid, turn_no, "user", _text(rng), "complete", now, "{}"))
            rows.append((next_id + i + 1, cid, turn_no, "assistant", _text(rng), "complete", now, "{}"))
        conn.executemany("INSERT INTO messages (id, context_id, turn, role, content, status, timestamp, metadata) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO message_vectors (message_id, model, dim, vector) VALUES (?, ?, ?, ?)",
                         [(r[0], MODEL, DIM, v.tobytes()) for r, v in zip(rows, vecs, strict=True)])
        next_id, n = next_id + batch, n + batch
    conn.execute("COMMIT")
    conn.execute(trigger)
    conn.close()
    print(f"  filled to {n} messages in {time.monotonic() - started:.0f}s", flush=True)
    return n


def _serve(data_dir: Path, root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "RHETOR_PORT": str(port), "RHETOR_DATA_DIR": str(data_dir), "RHETOR_EMBEDDER": "simulated",
           "RHETOR_SIMULATED_DELAY_SCALE": "0", "RHETOR_HERMES": "0", "RHETOR_LOG_LEVEL": "warning",
           "OLLAMA_HOST": "http://127.0.0.1:9", "RHETOR_INDEX_INTERVAL_S": "1"}
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "RHETOR_TASK_CONFIG"):
        env.pop(var, None)
    proc = subprocess.Popen(pinned(0, [sys.executable, "-m", "rhetor"]), env=env, cwd=root)
    return proc, f"http://127.0.0.1:{port}"


def _wait_indexed(url: str, proc: subprocess.Popen[bytes]) -> float:
    started = time.monotonic()
    while time.monotonic() - started < 600:
        assert proc.poll() is None, "rhetor exited"
        try:
            s = httpx.get(f"{url}/api/v1/memory/status", timeout=30).json()
            if s["backlog"] == 0 and s["indexed"] >= s["embedded"] and s["state"] == "idle":
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("indexer did not settle")


def _search_p50(url: str, path: str, body: dict[str, object], queries: int) -> float:
    times = []
    with httpx.Client(timeout=60) as client:
        for i in range(queries):
            t0 = time.perf_counter()
            r = client.post(url + path, json={**body, "query": f"{WORDS[i % len(WORDS)]} rollout password"})
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    return statistics.median(times) * 1000


async def _chat(port: int, hot: int, concurrency: int, seconds: float) -> tuple[float, int]:
    per = max(1, concurrency // hot)
    bodies = [json.dumps({"message": f"what did we decide about the {w} rollout?", "context_id": f"ergon:ctx-{c}"})
              for c, w in zip(range(hot), WORDS, strict=False)]
    started = time.perf_counter()
    stats = await asyncio.gather(*[run_load("127.0.0.1", port, "/api/v1/chat", b.encode(), concurrency=per,
                                            seconds=seconds) for b in bodies])
    elapsed = time.perf_counter() - started
    return sum(len(s.latencies) for s in stats) / elapsed, sum(s.errors for s in stats)


def measure(data_dir: Path, root: Path, args: argparse.Namespace, n: int) -> None:
    proc, url = _serve(data_dir, root)
    port = int(url.rsplit(":", 1)[1])
    try:
        settle = _wait_indexed(url, proc)
        rss_idle = psutil.Process(proc.pid).memory_info().rss / 2**20
        ctx = _search_p50(url, "/api/v1/contexts/ergon:ctx-7/search", {"k": 5}, args.queries)
        comp = _search_p50(url, "/api/v1/components/ergon/search", {"k": 5}, args.wide_queries)
        every = _search_p50(url, "/api/v1/memory/search", {"k": 5}, args.wide_queries)
        asyncio.run(_chat(port, args.hot, args.concurrency, 1.0))  # warm-up
        rps, errors = asyncio.run(_chat(port, args.hot, args.concurrency, args.seconds))
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        print(f"{n:>9} | {settle:6.1f}s | {rss_idle:8.1f} {rss:8.1f} MiB | {rps:7.0f} req/s err={errors} | "
              f"search p50 ctx {ctx:6.2f} ms  component {comp:8.2f} ms  all {every:8.2f} ms", flush=True)
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--contexts", type=int, default=100)
    ap.add_argument("--hot", type=int, default=4, help="contexts the chat load talks to")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--queries", type=int, default=100, help="searches in one context")
    ap.add_argument("--wide-queries", type=int, default=5, help="searches of a component and of everything")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/rhetor-stored"), help="kept between runs")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose server is measured")
    ap.add_argument("--fresh", action="store_true", help="delete --dir first")
    args = ap.parse_args()
    if args.fresh:
        shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    print(f"{'stored':>9} | settle  | RSS idle  after load | chat (context_id, c={args.concurrency}, "
          f"{args.hot} contexts) | search over HTTP", flush=True)
    for size in args.sizes:
        n = populate(args.dir / "rhetor.db", size, args.contexts, args.root)
        measure(args.dir, args.root, args, n)


if __name__ == "__main__":
    main()
