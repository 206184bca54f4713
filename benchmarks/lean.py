"""Lean-and-fast figures (issue 13): install size, start-up, the local embedder's memory and speed, and a soak.

    .venv/bin/python benchmarks/lean.py [all|venv|startup|embed|rss|soak] [--runs 5] [--minutes 10] [--requests N]
    .venv/bin/python benchmarks/lean.py soak --pin simulated   # history sized by the answering model's window
    .venv/bin/python benchmarks/lean.py startup --instructions   # start-up's instructions, counted by callgrind

- `venv`: the size of .venv on disk and whether PyTorch is in it;
- `startup`: `python -m rhetor` (Hermes off, default embedder) from exec to its first `GET /ready` 200, median of
  `--runs`, and its CPU time by then (steadier on a shared machine); and the modules imported by then that a lean
  start must not load (torch, tokenizers, numpy, aiohttp: they load on first use); with `--instructions`, instead,
  the instructions the process ran from exec to its first `/ready` 200, counted by valgrind's callgrind (one run: the
  figure repeats to ~1% however loaded the machine is, where CPU time swings ±30%);
- `embed`: the local model in this process, one core, BLAS on one thread (set before NumPy loads): first embedding
  after the start of load, and texts/s batched (the evaluation set's messages, ~17.5 tokens; whole turns, ~35),
  median of `--runs`, by wall-clock and by CPU time (steadier on a shared machine), for the NumPy runtime and,
  when installed, the PyTorch one;
- `rss`: a Rhetor process with the local embedder: resident memory once ready, then after a search made it load
  the model and embed (total for the process, split into anonymous and file-backed pages: the model's weights
  are a mapped file, clean and shared);
- `soak`: Rhetor (pinned to CPU 0) with contexts on and the local embedder, driven over 32 keep-alive connections,
  each with its own context, for `--minutes` (or `--requests`); samples its RSS every 10 s and reports the drift
  after the first minute (the target: flat within ±10%). With `--pin PROVIDER` (e.g. `simulated`) every request
  names that provider, so the history loaded per request is sized by its window alone: without it, the route's
  first targets (keyless anthropic, openai, gemini: ~1M-token windows) size it, and it grows with each
  conversation for the whole soak (README, "Lean install", round 6).
Figures are quoted in benchmarks/README.md; none is asserted in a unit test.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import psutil  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import Stats, _read_response, build_request  # noqa: E402
from run import free_port, pinned  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
EVAL = ROOT / "tests" / "data" / "retrieval_eval.json"
HEAVY = ("torch", "tokenizers", "numpy", "aiohttp")  # extension modules a lean start must not map (loaded on first use)


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def bench_venv() -> None:
    venv = Path(sys.prefix)
    site = next(venv.glob("lib/python*/site-packages"), venv)
    print(f"venv {venv}: {du(venv) / 2**20:.0f} MiB on disk; torch installed: {(site / 'torch').exists()}")


def serve(env_extra: dict[str, str], cpu: int | None = None,
          wrap: list[str] | None = None) -> tuple[subprocess.Popen[bytes], int, str]:
    port, data_dir = free_port(), tempfile.mkdtemp(prefix="rhetor-lean-")
    env = {**os.environ, "RHETOR_PORT": str(port), "RHETOR_DATA_DIR": data_dir, "RHETOR_HERMES": "0",
           "RHETOR_LOG_LEVEL": "warning", "OLLAMA_HOST": "http://127.0.0.1:9", **env_extra}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(key, None)
    argv = [*(wrap or []), PY, "-m", "rhetor"]
    proc = subprocess.Popen(pinned(cpu, argv) if cpu is not None else argv, env=env, cwd=ROOT)
    return proc, port, data_dir


def wait_ready(port: int, deadline_s: float = 60) -> float:
    """Seconds until GET /ready answers 200 (polled every 5 ms over fresh connections). With http.client: an
    `httpx.get` per poll built a client and its TLS context each time (~10 ms of CPU), so the poller competed with
    the starting server for the machine's two cores."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_s:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return time.perf_counter() - started
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.005)
    raise RuntimeError("Rhetor did not become ready")


def mem(pid: int) -> str:
    """Resident memory split as the kernel counts it: anonymous (the heap: private to the process) and
    file-backed (mapped libraries and the model's weights: clean pages, shared and reclaimable)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                  if line.startswith(("VmRSS", "RssAnon", "RssFile", "RssShmem")))
    mib = {k: int(v.split()[0]) / 1024 for k, v in fields.items()}
    return f"{mib['VmRSS']:.0f} MiB (anon {mib['RssAnon']:.0f}, file {mib['RssFile']:.0f})"


def stop(proc: subprocess.Popen[bytes], data_dir: str) -> None:
    proc.terminate()
    proc.wait(20)
    shutil.rmtree(data_dir, ignore_errors=True)


def bench_startup(runs: int) -> None:
    times, cpu = [], []
    for _ in range(runs):
        started = time.perf_counter()
        proc, port, data_dir = serve({})
        try:
            wait_ready(port)
            times.append(time.perf_counter() - started)
            spent = psutil.Process(proc.pid).cpu_times()
            cpu.append(spent.user + spent.system)  # steadier than wall time on a shared machine
            loaded = [m for m in HEAVY if _imported(proc.pid, m)]
        finally:
            stop(proc, data_dir)
    print(f"start-up to first /ready 200: median {statistics.median(times):.2f} s, min {min(times):.2f} s "
          f"over {runs} runs (CPU time by then: median {statistics.median(cpu):.2f} s, min {min(cpu):.2f} s); "
          f"heavy modules loaded at ready: {loaded or 'none'}")


def bench_startup_instructions() -> None:
    out = Path(tempfile.mkdtemp(prefix="rhetor-lean-cg-")) / "callgrind.out"
    proc, port, data_dir = serve({}, wrap=["valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={out}"])
    try:
        wait_ready(port, deadline_s=600)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], capture_output=True, check=False)
        loaded = [m for m in HEAVY if _imported(proc.pid, m)]
    finally:
        stop(proc, data_dir)
    dumps = [f for f in out.parent.glob("callgrind.out*") if f.name != out.name]  # the dump taken at ready
    total = max(int(line.split()[1]) for f in dumps for line in f.read_text(errors="replace").splitlines()
                if line.startswith(("summary:", "totals:")))
    shutil.rmtree(out.parent, ignore_errors=True)
    print(f"start-up to first /ready 200: {total / 1e6:,.0f}M instructions (callgrind); "
          f"heavy modules loaded at ready: {loaded or 'none'}")


def _imported(pid: int, package: str) -> bool:
    """Whether a package's compiled extension is mapped into the process (i.e. it was imported)."""
    return f"/site-packages/{package}/" in Path(f"/proc/{pid}/maps").read_text()


def corpus() -> tuple[list[str], list[str]]:
    """The evaluation set's messages (one or two sentences each, ~17.5 tokens), and each embedded with the rest
    of its turn, as the indexer does (~35 tokens)."""
    data = json.loads(EVAL.read_text())
    messages = [t[k] for c in data["conversations"] for t in c["turns"] for k in ("user", "assistant")]
    turns = [f"{t['user']} {t['assistant']}" for c in data["conversations"] for t in c["turns"]]
    return messages, turns


def bench_embed(runs: int) -> None:
    from rhetor.context import embedder_local

    messages, turns = corpus()
    for runtime in embedder_local.RUNTIMES:
        if runtime == "torch" and not all(_spec(m) for m in ("torch", "sentence_transformers")):
            print("torch runtime: not installed (pip install -e '.[torch]')")
            continue
        started = time.perf_counter()
        model = embedder_local.load_model(runtime)
        model.encode(["first embedding"])
        first = time.perf_counter() - started
        rates = []
        for label, texts in (("sentences", messages), ("turns", turns)):
            model.encode(texts[:16])
            wall, cpu = [], []
            for _ in range(runs):
                t0, c0 = time.perf_counter(), time.process_time()
                model.encode(texts)
                wall.append(len(texts) / (time.perf_counter() - t0))
                cpu.append(len(texts) / (time.process_time() - c0))
            rates.append(f"{statistics.median(wall):6.0f} {label}/s ({len(texts)}; "
                         f"{statistics.median(cpu):.0f}/s by CPU time)")
        rss = psutil.Process().memory_info().rss / 2**20
        print(f"{runtime:5} runtime: first embedding {first:.2f} s after the start of load; {'; '.join(rates)}; "
              f"this process {rss:.0f} MiB")


def _spec(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def bench_rss() -> None:
    proc, port, data_dir = serve({"RHETOR_EMBEDDER": "local"})
    try:
        wait_ready(port)
        time.sleep(1)
        idle = mem(proc.pid)
        t0 = time.perf_counter()
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/memory/search", json={"query": "how do I roll back?"},
                       timeout=120)
        took = time.perf_counter() - t0
        loaded = mem(proc.pid)
        print(f"rhetor RSS: {idle} ready (model not loaded), {loaded} with the local model loaded "
              f"(search {r.status_code} in {took:.2f} s, model load included); torch mapped: "
              f"{_imported(proc.pid, 'torch')}")
    finally:
        stop(proc, data_dir)


async def _soak_worker(port: int, ctx: int, deadline: float, budget: list[int], stats: Stats,
                       pin: str | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    words = ["deploy", "rollback", "database", "canary", "password", "latency", "budget", "schema", "alerts"]
    try:
        n = 0
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            n += 1
            payload = {"message": f"turn {n}: what about the {words[n % len(words)]} of service {ctx}?",
                       "context_id": f"soak-{ctx}"}
            if pin:
                payload["provider_id"] = pin
            body = json.dumps(payload).encode()
            started = time.perf_counter()
            writer.write(build_request("127.0.0.1", port, "/api/v1/chat", body))
            status = await _read_response(reader, started, stats)
            stats.latencies.append(time.perf_counter() - started)
            stats.errors += status != 200
    finally:
        writer.close()


async def _soak(port: int, pid: int, seconds: float, requests: int, pin: str | None) -> None:
    stats, budget = Stats(), [requests]
    deadline = time.perf_counter() + seconds
    workers = [asyncio.create_task(_soak_worker(port, c, deadline, budget, stats, pin)) for c in range(32)]
    samples: list[tuple[float, int, float]] = []
    started = time.perf_counter()
    while not all(w.done() for w in workers):
        await asyncio.sleep(min(10, max(0.1, deadline - time.perf_counter())))
        rss = psutil.Process(pid).memory_info().rss / 2**20
        samples.append((time.perf_counter() - started, len(stats.latencies), rss))
        print(f"  {samples[-1][0]:6.0f} s {samples[-1][1]:>8} requests  RSS {mem(pid)}", flush=True)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - started
    minutes: dict[int, list[float]] = {}
    for t, _, rss in samples:
        minutes.setdefault(int(t // 60), []).append(rss)
    means = {m: statistics.fmean(v) for m, v in minutes.items() if len(v) >= 3}  # per-minute means: RSS swings
    first, last = min(m for m in means if m >= 1) if len(means) > 1 else min(means), max(means)
    print(f"soak: {len(stats.latencies)} requests in {elapsed:.0f} s ({stats.errors} errors), "
          f"{len(stats.latencies) / elapsed:.0f} req/s; RSS min {min(s[2] for s in samples):.1f}, "
          f"max {max(s[2] for s in samples):.1f}, last {samples[-1][2]:.1f} MiB; per-minute means "
          + " ".join(f"{means[m]:.0f}" for m in sorted(means))
          + f" MiB; drift from minute {first} to minute {last}: "
          f"{(means[last] - means[first]) / means[first] * 100:+.1f}%; at the end {mem(pid)}")


def bench_soak(minutes: float, requests: int, pin: str | None = None) -> None:
    # the simulated provider answering at once: contexts, retrieval and the indexer are what is exercised
    proc, port, data_dir = serve({"RHETOR_EMBEDDER": "local", "RHETOR_SIMULATED_DELAY_SCALE": "0"}, cpu=0)
    try:
        wait_ready(port)
        httpx.post(f"http://127.0.0.1:{port}/api/v1/memory/search", json={"query": "warm"}, timeout=120)
        print(f"soak: 32 connections, 32 contexts, local embedder loaded, {minutes} min or {requests} requests"
              + (f", pinned to {pin}" if pin else ""))
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {1})  # the load generator on the other core
        asyncio.run(_soak(port, proc.pid, minutes * 60, requests, pin))
        status = httpx.get(f"http://127.0.0.1:{port}/api/v1/memory/status", timeout=10).json()
        print(f"indexer: {status.get('embedded')} embedded, backlog {status.get('backlog')}")
    finally:
        stop(proc, data_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("what", nargs="?", default="all", choices=["all", "venv", "startup", "embed", "rss", "soak"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--requests", type=int, default=10**9)
    ap.add_argument("--pin", help="soak: the provider every request names (e.g. simulated)")
    ap.add_argument("--instructions", action="store_true", help="startup: count instructions (callgrind) instead")
    args = ap.parse_args()
    if args.what in ("all", "venv"):
        bench_venv()
    if args.what == "startup" and args.instructions:
        bench_startup_instructions()
    elif args.what in ("all", "startup"):
        bench_startup(args.runs)
    if args.what in ("all", "embed"):
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
        if len(cpus) > 1:
            os.sched_setaffinity(0, {min(cpus)})  # one core
        bench_embed(args.runs)
        if len(cpus) > 1:
            os.sched_setaffinity(0, cpus)
    if args.what in ("all", "rss"):
        bench_rss()
    if args.what in ("all", "soak"):
        bench_soak(args.minutes, args.requests, args.pin)


if __name__ == "__main__":
    main()
