"""Benchmark Rhetor against calling the upstream directly, side by side in one run.

Starts the zero-delay upstream (benchmarks/upstream.py) and Rhetor (`python -m rhetor`, pinned to CPU 0 with
taskset, routed to the upstream through the openai provider, no context), then for streaming and not, at
concurrency 1, 8 and 32, drives both with benchmarks/load.py (pinned to CPU 1 with the upstream) and prints
requests/s, p50/p99 latency, added latency and added time-to-first-byte. Finally sends `--total` requests
(default 100,000) and reports Rhetor's resident memory.

`--paths compat` measures the OpenAI-compatible front instead: POST /v1/chat/completions to the openai provider
(against the upstream's own /v1/chat/completions), and OpenAI-front -> Anthropic-provider translation (against
the upstream's /v1/messages, the call Rhetor makes), streaming and not; and the Anthropic front to the Anthropic
provider (an-json, an-stream). OpenAI→OpenAI and Anthropic→Anthropic are same-vendor pass-through (the caller's body
forwarded, the answer relayed as received); `--off-env RHETOR_PASSTHROUGH=0` runs a second Rhetor where they take
the translated path, printed beside each row: pass-through against translation, same run, same upstream.

    .venv/bin/python benchmarks/run.py [--seconds 5] [--total 100000] [--concurrency 1 8 32] [--paths native compat]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import run_load

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 \
        else argv


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.post(url, json={}, timeout=1).status_code < 600:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


# Issue 9's governance on and off, as benchmarks/governance.py and instructions.py --governance set them up: `on`
# also needs the caller key (seed_bench_key), with RPM/TPM limits set but never reached
GOVERNANCE_ENV = {"on": {"RHETOR_BUDGET_POLICY": "warn", "RHETOR_BUDGET_DAILY_LIMIT": "1e9"},
                  "off": {"RHETOR_USAGE_LEDGER": "0", "RHETOR_BUDGET_POLICY": "ignore"}}


async def seed_bench_key(data_dir: Path) -> None:
    """A virtual key for the secret `bench` (what benchmarks/load.py sends), limits set but never reached."""
    from rhetor.governance.keys import KeyRecord, digest
    from rhetor.governance.keystore import SqliteKeyStore

    store = SqliteKeyStore(data_dir / "keys.db")
    await store.open()
    try:
        await store.create(KeyRecord(id="key_bench", name="bench", digest=digest(b"bench"), hint="bench",
                                     created_at=time.time(), spec={"rpm": 10**9, "tpm": 10**12}))
    finally:
        await store.close()


def start_upstream() -> tuple[subprocess.Popen[bytes], int]:
    """The zero-delay upstream on CPU 1, where this process (the load generator) moves too; servers go on CPU 0."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    port = free_port()
    return subprocess.Popen(pinned(1, [PY, str(ROOT / "benchmarks" / "upstream.py"), str(port)])), port


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def measured(pid: int, port: int, path: str, body: str, conc: int, seconds: float) -> dict[str, float]:
    """run_load's summary plus `cpu_us`: the server process's CPU time per request (user+system) over the run —
    unlike throughput and latency, it barely moves when other work shares the machine."""
    before = cpu_s(pid)
    s = asyncio.run(run_load("127.0.0.1", port, path, body.encode(), concurrency=conc, seconds=seconds)).summary()
    s["cpu_us"] = 1e6 * (cpu_s(pid) - before) / max(1.0, s["requests"])
    return s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--total", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--paths", nargs="+", choices=["native", "compat"], default=["native", "compat"])
    ap.add_argument("--log-level", default="warning", help="Rhetor's RHETOR_LOG_LEVEL (info writes access lines)")
    ap.add_argument("--rhetor-log", default=None, help="file for Rhetor's stderr (its log lines)")
    ap.add_argument("--off-env", nargs="*", default=[], metavar="VAR=VALUE",
                    help="also run a second Rhetor with these variables (e.g. RHETOR_METRICS=0 RHETOR_ACCESS_LOG=0)"
                         " and print it as 'off' beside each row: the cost of a feature, same run")
    ap.add_argument("--no-floor", action="store_true",
                    help="skip the floor: benchmarks/floor.py, a do-nothing pass-through proxy on the same stack "
                         "(uvicorn+httptools+uvloop, one aiohttp session), pinned to Rhetor's core")
    ap.add_argument("--bench-key", action="store_true",
                    help="the measured Rhetor requires a caller key: a virtual key whose secret is the load "
                         "generator's 'bench', with huge RPM/TPM limits so every request is resolved, admitted and "
                         "counted (the 'off' Rhetor, if any, has no key: keys + limits on vs off, same run)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the load generator shares CPU 1 with the upstream
    up_port, rh_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="rhetor-bench-")
    tasks = Path(data_dir) / "tasks.json"
    tasks.write_text(json.dumps({"default": {"targets": [{"provider": "openai", "model": "gpt-5.4-mini",
                                                           "retries": 0}], "simulated_fallback": False}}))
    env = {**os.environ, "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
           "RHETOR_PORT": str(rh_port), "RHETOR_DATA_DIR": data_dir, "RHETOR_TASK_CONFIG": str(tasks),
           "RHETOR_LOG_LEVEL": args.log_level, "RHETOR_HERMES": "0", "RHETOR_EMBEDDER": "none", "OLLAMA_HOST": "http://127.0.0.1:9",
           "ANTHROPIC_API_KEY": "bench", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{up_port}"}
    if args.bench_key:
        asyncio.run(seed_bench_key(Path(data_dir)))
    upstream = subprocess.Popen(pinned(1, [PY, str(ROOT / "benchmarks" / "upstream.py"), str(up_port)]))
    log = open(args.rhetor_log, "ab") if args.rhetor_log else None
    rhetor = subprocess.Popen(pinned(0, [PY, "-m", "rhetor"]), env=env, cwd=ROOT, stderr=log)
    floor_port = None if args.no_floor else free_port()
    floor = None if floor_port is None else subprocess.Popen(
        pinned(0, [PY, str(ROOT / "benchmarks" / "floor.py"), str(floor_port), f"http://127.0.0.1:{up_port}"]))
    off_port = free_port() if args.off_env else None
    off = None
    if off_port is not None:
        off_env = {**env, "RHETOR_PORT": str(off_port), **dict(kv.split("=", 1) for kv in args.off_env)}
        off_env["RHETOR_DATA_DIR"] = tempfile.mkdtemp(prefix="rhetor-bench-off-")
        off = subprocess.Popen(pinned(0, [PY, "-m", "rhetor"]), env=off_env, cwd=ROOT, stderr=log)
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/v1/chat/completions")
        wait_ready(f"http://127.0.0.1:{rh_port}/api/v1/chat")
        if off_port is not None:
            wait_ready(f"http://127.0.0.1:{off_port}/api/v1/chat")
        if floor_port is not None:
            wait_ready(f"http://127.0.0.1:{floor_port}/v1/chat/completions")
        direct_body = json.dumps({"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]})
        rhetor_body = json.dumps({"message": "hi"})
        anthropic_body = json.dumps({"model": "claude-sonnet-5-5", "max_tokens": 64,
                                     "messages": [{"role": "user", "content": "hi"}]})

        def compat(model: str) -> str:
            return json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})

        def streamed(body: str) -> str:
            return body[:-1] + ', "stream": true}'

        # (label, direct path, direct body, rhetor path, rhetor body, stream)
        cases: list[tuple[str, str, str, str, str, bool]] = []
        if "native" in args.paths:
            cases += [("json", "/v1/chat/completions", direct_body, "/api/v1/chat", rhetor_body, False),
                      ("stream", "/v1/chat/completions", streamed(direct_body), "/api/v1/chat/stream", rhetor_body,
                       True)]
        if "compat" in args.paths:
            oa, oa_anth = compat("openai/gpt-5.4-mini"), compat("anthropic/claude-sonnet-5-5")
            an = json.dumps({"model": "anthropic/claude-sonnet-5-5", "max_tokens": 64,
                             "messages": [{"role": "user", "content": "hi"}]})
            cases += [("oa-json", "/v1/chat/completions", direct_body, "/v1/chat/completions", oa, False),
                      ("oa-stream", "/v1/chat/completions", streamed(direct_body), "/v1/chat/completions",
                       streamed(oa), True),
                      ("oa>anth", "/v1/messages", anthropic_body, "/v1/chat/completions", oa_anth, False),
                      ("oa>anth-s", "/v1/messages", streamed(anthropic_body), "/v1/chat/completions",
                       streamed(oa_anth), True),
                      ("an-json", "/v1/messages", anthropic_body, "/v1/messages", an, False),
                      ("an-stream", "/v1/messages", streamed(anthropic_body), "/v1/messages", streamed(an), True)]
        print(f"{'mode':10} {'conc':>4} | {'direct rps':>10} {'p50':>7} | {'rhetor rps':>10} {'p50':>7} {'p99':>7}"
              f" | {'added p50':>9} {'added ttfb':>10}")
        if floor_port is not None:
            print(f"{'  floor':10} {'':>4} | {'':>18} | {'floor rps':>10} {'p50':>7} {'p99':>7} | {'added p50':>9} "
                  f"{'added ttfb':>10} | rhetor/floor rps")
        for label, d_path, d_body, r_path, r_body, stream in cases:
            for conc in args.concurrency:
                asyncio.run(run_load("127.0.0.1", rh_port, r_path, r_body.encode(), concurrency=conc,
                                     seconds=1))  # warm-up
                d = asyncio.run(run_load("127.0.0.1", up_port, d_path, d_body.encode(),
                                         concurrency=conc, seconds=args.seconds)).summary()
                r = measured(rhetor.pid, rh_port, r_path, r_body, conc, args.seconds)
                ttfb = f"{r['ttfb_p50_ms'] - d['ttfb_p50_ms']:9.3f}ms" if stream else f"{'':>10}"
                print(f"{label:10} {conc:>4} | {d['rps']:>10.0f} {d['p50_ms']:>6.3f}ms | "
                      f"{r['rps']:>10.0f} {r['p50_ms']:>6.3f}ms {r['p99_ms']:>6.2f}ms | "
                      f"{r['p50_ms'] - d['p50_ms']:>8.3f}ms {ttfb} | cpu {r['cpu_us']:5.0f}us/req"
                      f"  errors={int(r['errors'])}", flush=True)
                if floor_port is not None:
                    asyncio.run(run_load("127.0.0.1", floor_port, d_path, d_body.encode(), concurrency=conc,
                                         seconds=1))  # warm-up
                    assert floor is not None
                    f = measured(floor.pid, floor_port, d_path, d_body, conc, args.seconds)
                    f_ttfb = f"{f['ttfb_p50_ms'] - d['ttfb_p50_ms']:9.3f}ms" if stream else f"{'':>10}"
                    print(f"{'  floor':10} {conc:>4} | {'':>18} | {f['rps']:>10.0f} {f['p50_ms']:>6.3f}ms "
                          f"{f['p99_ms']:>6.2f}ms | {f['p50_ms'] - d['p50_ms']:>8.3f}ms {f_ttfb} | "
                          f"{100 * r['rps'] / f['rps']:.0f}% | cpu {f['cpu_us']:5.0f}us/req, "
                          f"rhetor/floor by cpu {100 * f['cpu_us'] / r['cpu_us']:.0f}%", flush=True)
                if off_port is not None:
                    asyncio.run(run_load("127.0.0.1", off_port, r_path, r_body.encode(), concurrency=conc,
                                         seconds=1))  # warm-up
                    assert off is not None
                    o = measured(off.pid, off_port, r_path, r_body, conc, args.seconds)
                    print(f"{'  off':10} {conc:>4} | {'':>10} {'':>7} | {o['rps']:>10.0f} {o['p50_ms']:>6.3f}ms "
                          f"{o['p99_ms']:>6.2f}ms | on-off p50 {r['p50_ms'] - o['p50_ms']:+.3f}ms, "
                          f"rps {100 * (r['rps'] / o['rps'] - 1):+.1f}%, cpu {r['cpu_us'] - o['cpu_us']:+.0f}us/req",
                          flush=True)
        if args.total:
            started = time.monotonic()
            s = asyncio.run(run_load("127.0.0.1", rh_port, "/api/v1/chat", rhetor_body.encode(), concurrency=32,
                                     seconds=3600, max_requests=args.total)).summary()
            rss = psutil.Process(rhetor.pid).memory_info().rss / 2**20
            print(f"after {int(s['requests'])} more requests ({time.monotonic() - started:.0f}s, "
                  f"{int(s['errors'])} errors): rhetor RSS {rss:.1f} MiB")
    finally:
        for p in (rhetor, upstream, *(x for x in (off, floor) if x is not None)):
            p.terminate()
            p.wait(10)
        if log is not None:
            log.close()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
