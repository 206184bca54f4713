"""Worker scaling: throughput of `python -m rhetor --workers N` for N = 1, 2 (and 4 where the machine has the cores),
with the load generator (benchmarks/load.py, one process) on the same cores — nothing is pinned, as on a real host.

Each round starts a fresh group, warms it up, then runs `--seconds` of `POST /api/v1/chat` at `--concurrency`
keep-alive connections against the one port. The answer comes from the simulated provider at zero delay (no
upstream process competing for the cores; `--upstream` routes through benchmarks/upstream.py's zero-delay
OpenAI-compatible server instead). Rounds alternate N (1, 2, 1, 2, ...) so a drift in the machine's load shows.
Reported per round: requests/s, p50/p99, errors, the CPU the workers used per request, the load generator's CPU
per request, the resident memory of the group (supervisor + workers) and how the work split between workers (from
their CPU time); then the ratio of the medians. Run it on a quiet machine and quote `uptime`.

    .venv/bin/python benchmarks/workers.py --seconds 10 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import run_load

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"rhetor exited with {proc.returncode}")
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def workers_cpu(proc: psutil.Process) -> dict[int, float]:
    """CPU seconds per serving process: the workers, or the process itself with --workers 1 (no supervisor)."""
    out = {}
    for child in proc.children() or [proc]:
        try:
            t = child.cpu_times()
            out[child.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def one_round(n: int, args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    port = free_port()
    data = tempfile.mkdtemp(prefix="rhetor-bench-workers-")
    run_env = {**env, "RHETOR_PORT": str(port), "RHETOR_DATA_DIR": data}
    proc = subprocess.Popen([PY, "-m", "rhetor", "--workers", str(n)], env=run_env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"message": "hi"}).encode()
    try:
        wait_ready(url, proc)
        asyncio.run(run_load("127.0.0.1", port, "/api/v1/chat", body, concurrency=args.concurrency, seconds=2))
        sup = psutil.Process(proc.pid)
        before, me_before = workers_cpu(sup), psutil.Process().cpu_times()
        s = asyncio.run(run_load("127.0.0.1", port, "/api/v1/chat", body, concurrency=args.concurrency,
                                 seconds=args.seconds)).summary()
        after, me_after = workers_cpu(sup), psutil.Process().cpu_times()
        used = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
        total = sum(used.values())
        s["cpu_us"] = 1e6 * total / max(1.0, s["requests"])
        s["loadgen_cpu_us"] = 1e6 * ((me_after.user + me_after.system) - (me_before.user + me_before.system)) / max(
            1.0, s["requests"])
        serving = sup.children() or [sup]
        s["rss_mb"] = sum(p.memory_info().rss for p in [sup, *serving] if p.is_running()) / 2**20 if serving else 0.0
        shares = sorted(used.values(), reverse=True)
        s["split"] = " / ".join(f"{100 * u / total:.0f}%" for u in shares) if total else "-"
        return s
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="default: 1 2 (and 4 with >= 4 cores)")
    ap.add_argument("--upstream", action="store_true", help="through benchmarks/upstream.py instead of simulated")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    counts = args.workers or ([1, 2, 4] if cores >= 4 else [1, 2])
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(RHETOR_HERMES="0", RHETOR_EMBEDDER="none", RHETOR_LOG_LEVEL="warning", RHETOR_ACCESS_LOG="0",
               RHETOR_SIMULATED_DELAY_SCALE="0", OLLAMA_HOST="http://127.0.0.1:9", RHETOR_USAGE_LEDGER="0")
    upstream = None
    if args.upstream:
        up_port = free_port()
        upstream = subprocess.Popen([PY, str(ROOT / "benchmarks" / "upstream.py"), str(up_port)])
        tasks = Path(tempfile.mkdtemp(prefix="rhetor-bench-tasks-")) / "tasks.json"
        tasks.write_text(json.dumps({"default": {"targets": [{"provider": "openai", "model": "gpt-5.4-mini",
                                                               "retries": 0}], "simulated_fallback": False}}))
        env.update(OPENAI_API_KEY="bench", OPENAI_BASE_URL=f"http://127.0.0.1:{up_port}/v1",
                   RHETOR_TASK_CONFIG=str(tasks))
    else:
        tasks = Path(tempfile.mkdtemp(prefix="rhetor-bench-tasks-")) / "tasks.json"
        tasks.write_text(json.dumps({"default": {"provider": "simulated", "model": "simulated-fast"}}))
        env["RHETOR_TASK_CONFIG"] = str(tasks)
    print(f"{cores} cores; load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} at start; "
          f"{'upstream' if args.upstream else 'simulated'} answers; concurrency {args.concurrency}, "
          f"{args.seconds:g} s per round")
    print(f"{'workers':>7} {'round':>5} | {'rps':>7} {'p50':>8} {'p99':>8} {'errors':>6} | {'cpu/req':>8} "
          f"{'loadgen/req':>11} {'rss':>7} | split")
    results: dict[int, list[float]] = {n: [] for n in counts}
    try:
        for r in range(args.rounds):
            for n in counts:
                s = one_round(n, args, env)
                results[n].append(s["rps"])
                print(f"{n:>7} {r + 1:>5} | {s['rps']:>7.0f} {s['p50_ms']:>6.2f}ms {s['p99_ms']:>6.2f}ms "
                      f"{int(s['errors']):>6} | {s['cpu_us']:>6.0f}us {s['loadgen_cpu_us']:>9.0f}us "
                      f"{s['rss_mb']:>5.0f}MB | {s['split']}",
                      flush=True)
    finally:
        if upstream is not None:
            upstream.terminate()
    base = statistics.median(results[counts[0]])
    for n in counts[1:]:
        print(f"median rps: {counts[0]} worker(s) {base:.0f}, {n} workers {statistics.median(results[n]):.0f} "
              f"-> x{statistics.median(results[n]) / base:.2f}")
    print(f"load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} at the end")


if __name__ == "__main__":
    main()
