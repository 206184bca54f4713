"""SQLite mode against PostgreSQL mode, same run: native chats with a context (`POST /api/v1/chat`, each turn
read from and written to the store, semantic memory on with the simulated embedder) through one Rhetor process
per mode, pinned to CPU 0, the simulated provider with no delay, the ledger on.

For each mode (alternating, `--rounds` times, so both see the same machine): a fresh data dir (and a fresh
PostgreSQL schema), a warm-up, then `--seconds` of load at `--concurrency` connections spread over `--hot`
contexts. Printed per mode: requests/s, p50/p99 latency and the server's CPU milliseconds per request (process
user+system time over the run: robust on a shared machine). PostgreSQL's own CPU is not counted (it may run on
another machine); the client is this process.

    RHETOR_BENCH_DATABASE_URL=postgresql://root@127.0.0.1:5432/test .venv/bin/python benchmarks/storage.py \
        [--seconds 8] [--concurrency 8] [--hot 8] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Stats, run_load
from run import free_port, pinned

ROOT = Path(__file__).resolve().parent.parent


def _serve(data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "RHETOR_PORT": str(port), "RHETOR_DATA_DIR": str(data_dir), "RHETOR_EMBEDDER": "simulated",
           "RHETOR_SIMULATED_DELAY_SCALE": "0", "RHETOR_HERMES": "0", "RHETOR_LOG_LEVEL": "warning",
           "OLLAMA_HOST": "http://127.0.0.1:9", "RHETOR_INDEX_INTERVAL_S": "1"}
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "RHETOR_TASK_CONFIG", "RHETOR_DATABASE_URL", "RHETOR_REDIS_URL"):
        env.pop(var, None)
    if database_url is not None:
        env["RHETOR_DATABASE_URL"] = database_url
    proc = subprocess.Popen(pinned(0, [sys.executable, "-m", "rhetor"]), env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "rhetor exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("rhetor did not become ready")


async def _chat(port: int, hot: int, concurrency: int, seconds: float) -> list[Stats]:
    per = max(1, concurrency // hot)
    bodies = [json.dumps({"message": f"what did we decide about rollout {c}?", "context_id": f"ergon:bench-{c}"})
              for c in range(hot)]
    return await asyncio.gather(*[run_load("127.0.0.1", port, "/api/v1/chat", b.encode(), concurrency=per,
                                           seconds=seconds) for b in bodies])


def measure(mode: str, database_url: str | None, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"rhetor-storage-{mode}-") as tmp:
        url = None
        if database_url is not None:
            sep = "&" if "?" in database_url else "?"
            url = f"{database_url}{sep}schema=rhetor_bench_{secrets.token_hex(4)}"
        proc, port = _serve(Path(tmp), url)
        try:
            asyncio.run(_chat(port, args.hot, args.concurrency, 1.5))  # warm-up: contexts exist, pools open
            server = psutil.Process(proc.pid)
            cpu0 = sum(server.cpu_times()[:2])
            started = time.perf_counter()
            stats = asyncio.run(_chat(port, args.hot, args.concurrency, args.seconds))
            elapsed = time.perf_counter() - started
            cpu = sum(server.cpu_times()[:2]) - cpu0
        finally:
            proc.terminate()
            proc.wait(30)
            if url is not None:
                _drop(database_url, url.rsplit("schema=", 1)[1])  # type: ignore[arg-type]
    lat = sorted(x for s in stats for x in s.latencies)
    n = len(lat)
    return {"rps": n / elapsed, "p50": statistics.median(lat) * 1000, "p99": lat[int(0.99 * (n - 1))] * 1000,
            "cpu_ms": cpu * 1000 / max(1, n), "errors": float(sum(s.errors for s in stats)), "n": float(n)}


def _drop(server: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(server, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--hot", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    database_url = os.environ.get("RHETOR_BENCH_DATABASE_URL") or os.environ.get("RHETOR_TEST_DATABASE_URL")
    if not database_url:
        sys.exit("set RHETOR_BENCH_DATABASE_URL=postgresql://... (a database this benchmark may add a schema to)")
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "postgres": []}
    for _ in range(args.rounds):
        for mode, url in (("sqlite", None), ("postgres", database_url)):
            results[mode].append(measure(mode, url, args))
    print(f"native chat with a context, {args.concurrency} connections over {args.hot} contexts, {args.seconds:.0f} s "
          f"x {args.rounds} rounds, one process on CPU 0 (median of rounds)")
    for mode, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{mode:9} {med['rps']:7.0f} req/s  p50 {med['p50']:6.2f} ms  p99 {med['p99']:6.2f} ms  "
              f"server CPU {med['cpu_ms']:5.2f} ms/request  errors {med['errors']:.0f}  ({med['n']:.0f} requests)")


if __name__ == "__main__":
    main()
