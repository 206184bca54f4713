"""Governance on against off (issue 9's speed point), side by side in one run with alternating rounds.

Two Rhetors on the same zero-delay upstream, both pinned to CPU 0 (the upstream and the load generator on CPU 1):
`on` requires a caller key (a virtual key with RPM/TPM limits set but never reached, so every request is resolved,
admitted and counted), has a `warn` budget and writes the usage ledger; `off` has no key, no ledger and budget
policy `ignore`. Rounds alternate (on, off, off, on, ...) so that drift on a shared machine hits both; each line
gives requests/s, p50 and the server's CPU time per request, then the medians and the differences, and the
median of the rounds' own on/off ratios (`paired`: on a machine whose speed drifts, the steadier figure).

    .venv/bin/python benchmarks/governance.py [--path /api/v1/chat] [--concurrency 1 32] [--rounds 6] [--seconds 3]
                                              [--servers 1]

`--servers N` runs N processes of each setup, every round over all of them (order reversed every other round),
and pools each setup's rounds: two processes of the same code and setup differ by ~2% in throughput on one of
these machines and up to ~7% on another (where each lands in memory), which one pair of servers cannot average.

`--variant "NAME VAR=V ..."` (repeatable) adds a setup: `on` with those environment variables (a token `nokey`:
without the caller key), measured in the same rotation and quoted against `off` like `on`, to price each part
of governance on the wall clock (e.g. `--variant "no-ledger RHETOR_USAGE_LEDGER=0"`).

`--side-by-side` serves each setup and `off` at the same time, both on CPU 0, each loaded at the concurrency by
its own connections: the core splits between the two, so the ratio of their request counts in a round is the
ratio of their costs a request, at the same instant. On a shared VM whose speed drifts by ±20% from second to
second (rounds of 2,300 to 5,300 req/s for one server) it repeats to about ±1%: the figure to judge a change by
there. `--servers N` then runs N pairs, one after another, and pools their rounds.

`--interleaved N` measures c=1 latency by turns: one client sends N single requests to each setup and to `off`,
alternating (on, off, off, on, ...) on two kept-alive connections, so each pair of requests is a millisecond apart
and a drift of the machine's speed hits both; it prints each setup's p50 and the median of the pairs' differences
(issue 9: at most +0.05 ms at the p50). Nothing else loads the servers meanwhile.

`--rss N` instead loads the `on` Rhetor alone at c=32 for N spans of 100,000 requests and prints its RSS after the
warm-up and after each span (issue 9: flat after 100,000 requests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import build_request, run_load
from run import GOVERNANCE_ENV, PY, ROOT, free_port, measured, pinned, seed_bench_key, start_upstream, wait_ready

BODIES = {"/api/v1/chat": '{"message": "hi"}',
          "/v1/chat/completions": '{"model": "openai/gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}'}


def start(upstream: int, extra: dict[str, str], key: bool) -> tuple[subprocess.Popen[bytes], int]:
    port, data = free_port(), Path(tempfile.mkdtemp(prefix="rhetor-gov-"))
    tasks = data / "tasks.json"
    tasks.write_text(json.dumps({"default": {"targets": [{"provider": "openai", "model": "gpt-5.4-mini",
                                                           "retries": 0}], "simulated_fallback": False}}))
    if key:
        asyncio.run(seed_bench_key(data))
    env = {**os.environ, "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream}/v1",
           "RHETOR_PORT": str(port), "RHETOR_DATA_DIR": str(data), "RHETOR_TASK_CONFIG": str(tasks),
           "RHETOR_LOG_LEVEL": "warning", "RHETOR_HERMES": "0", "RHETOR_EMBEDDER": "none",
           "OLLAMA_HOST": "http://127.0.0.1:9", **extra}
    return subprocess.Popen(pinned(0, [PY, "-m", "rhetor"]), env=env, cwd=ROOT), port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def paired(on: list[dict[str, float]], off: list[dict[str, float]], servers: int) -> str:
    """The median over rounds of on/off throughput within the same round (each round's servers pooled), with
    its quartiles: where the machine's speed drifts from second to second (a shared VM), a ratio of two
    neighbours moves far less than either figure, and the ABBA order cancels a steady drift."""
    ratios = [sum(r["rps"] for r in on[i:i + servers]) / sum(r["rps"] for r in off[i:i + servers])
              for i in range(0, min(len(on), len(off)), servers)]
    if len(ratios) < 4:
        return f"{100 * (statistics.median(ratios) - 1):+.1f}%"
    q1, q2, q3 = statistics.quantiles(ratios, n=4)
    return f"{100 * (q2 - 1):+.1f}% (quartiles {100 * (q1 - 1):+.1f}%, {100 * (q3 - 1):+.1f}%)"


def paired_p50(on: list[dict[str, float]], off: list[dict[str, float]]) -> str:
    """The median over rounds of on's p50 minus off's in the same round (neighbours in time: a drift of the
    machine's speed, which moves each round's p50 by far more than governance does, cancels), with quartiles."""
    deltas = [a["p50_ms"] - b["p50_ms"] for a, b in zip(on, off, strict=False)]
    if len(deltas) < 4:
        return f"{statistics.median(deltas):+.3f} ms"
    q1, q2, q3 = statistics.quantiles(deltas, n=4)
    return f"{q2:+.3f} ms (quartiles {q1:+.3f}, {q3:+.3f})"


def once(sock: socket.socket, request: bytes) -> float:
    """One request on a kept-alive blocking socket, read to its content-length; its latency in ms."""
    t0 = time.perf_counter()
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    lower = head.lower()
    at = lower.find(b"content-length:")
    end = lower.find(b"\r\n", at)
    length = int(lower[at + 15:end if end >= 0 else None])
    while len(rest) < length:
        rest += sock.recv(65536)
    if head[9:12] != b"200":
        raise RuntimeError(f"HTTP {head[9:12].decode()} from {sock.getpeername()}")
    return (time.perf_counter() - t0) * 1000


def interleaved(setups: dict[str, tuple[dict[str, str], bool]], upstream_port: int, path: str, n: int) -> None:
    """c=1 latency by turns (see the module docstring): per setup, its p50, off's and the pairs' median difference.
    Blocking sockets and load.py's request; a response is read to its content-length with the same few byte
    searches whatever its headers (http.client's header parser would add ~5 µs a header to the longer head)."""
    for name, setup in setups.items():
        if name == "off":
            continue
        pair = [start(upstream_port, *setup), start(upstream_port, *setups["off"])]
        try:
            for _, port in pair:
                wait_ready(f"http://127.0.0.1:{port}/api/v1/chat")
            socks = [socket.create_connection(("127.0.0.1", port)) for _, port in pair]
            requests = [build_request("127.0.0.1", port, path, BODIES[path].encode()) for _, port in pair]

            conns = list(zip(socks, requests, strict=True))
            for _ in range(200):  # warm-up
                once(*conns[0])
                once(*conns[1])
            mine: list[float] = []
            theirs: list[float] = []
            for i in range(n):
                if i % 2 == 0:
                    mine.append(once(*conns[0]))
                    theirs.append(once(*conns[1]))
                else:
                    theirs.append(once(*conns[1]))
                    mine.append(once(*conns[0]))
            for sock in socks:
                sock.close()
            q1, q2, q3 = statistics.quantiles([a - b for a, b in zip(mine, theirs, strict=True)], n=4)
            print(f"c=1   interleaved, {name} vs off: p50 {statistics.median(mine):.3f} ms vs "
                  f"{statistics.median(theirs):.3f} ms: {statistics.median(mine) - statistics.median(theirs):+.3f} ms; "
                  f"pairs' median difference {q2:+.3f} ms (quartiles {q1:+.3f}, {q3:+.3f}; {n} pairs)", flush=True)
        finally:
            for proc, _ in pair:
                proc.terminate()


def side_by_side(setups: dict[str, tuple[dict[str, str], bool]], upstream_port: int, path: str, conc: int,
                 rounds: int, seconds: float, pairs: int) -> None:
    """Each setup against `off`, served at once on CPU 0 (see the module docstring); per setup the median of the
    rounds' request-count ratios, with quartiles, over `pairs` pairs of processes."""
    body = BODIES[path].encode()

    async def both(a: int, b: int, span: float) -> tuple[float, float]:
        x, y = await asyncio.gather(run_load("127.0.0.1", a, path, body, concurrency=conc, seconds=span),
                                    run_load("127.0.0.1", b, path, body, concurrency=conc, seconds=span))
        return x.summary()["requests"], y.summary()["requests"]

    for name, setup in setups.items():
        if name == "off":
            continue
        ratios: list[float] = []
        for _ in range(pairs):
            pair = [start(upstream_port, *setup), start(upstream_port, *setups["off"])]
            try:
                for _, port in pair:
                    wait_ready(f"http://127.0.0.1:{port}/api/v1/chat")
                asyncio.run(both(pair[0][1], pair[1][1], 1.0))  # warm-up
                for _ in range(rounds):
                    done, done_off = asyncio.run(both(pair[0][1], pair[1][1], seconds))
                    ratios.append(done / done_off)
            finally:
                for proc, _ in pair:
                    proc.terminate()
        q1, q2, q3 = statistics.quantiles(ratios, n=4)
        print(f"c={conc:<3} side by side, {name} vs off: rps {100 * (q2 - 1):+.1f}% (quartiles {100 * (q1 - 1):+.1f}%,"
              f" {100 * (q3 - 1):+.1f}%; {len(ratios)} rounds, {pairs} pair(s) of processes)", flush=True)


def rss_run(upstream_port: int, path: str, spans: int) -> None:
    proc, port = start(upstream_port, GOVERNANCE_ENV["on"], True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/api/v1/chat")
        measured(proc.pid, port, path, BODIES[path], 32, 2)
        print(f"on, after the warm-up: RSS {rss_mib(proc.pid):.1f} MiB", flush=True)
        done = 0
        for _ in range(spans):
            span, rps = 0, 0.0
            while span < 100_000:
                r = measured(proc.pid, port, path, BODIES[path], 32, 5)
                span, rps = span + int(r["requests"]), r["rps"]
            done += span
            print(f"on, after {done:,} requests: RSS {rss_mib(proc.pid):.1f} MiB ({rps:.0f} req/s)", flush=True)
    finally:
        proc.terminate()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", default="/api/v1/chat", choices=sorted(BODIES))
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--servers", type=int, default=1, metavar="N", help="processes of each setup (pooled)")
    ap.add_argument("--rss", type=int, default=0, metavar="N", help="RSS of `on` over N x 100,000 requests")
    ap.add_argument("--side-by-side", action="store_true", help="each setup and `off` at once, sharing CPU 0")
    ap.add_argument("--interleaved", type=int, default=0, metavar="N",
                    help="c=1 latency: N requests to each setup and `off` by turns")
    ap.add_argument("--variant", action="append", default=[], metavar='"NAME VAR=V ..."',
                    help="another setup: `on` with these variables (`nokey`: no caller key)")
    args = ap.parse_args()
    setups: dict[str, tuple[dict[str, str], bool]] = {"on": (GOVERNANCE_ENV["on"], True),
                                                      "off": (GOVERNANCE_ENV["off"], False)}
    for spec in args.variant:
        name, *tokens = spec.split()
        env = dict(t.split("=", 1) for t in tokens if t != "nokey")
        setups[name] = ({**GOVERNANCE_ENV["on"], **env}, "nokey" not in tokens)
    upstream, upstream_port = start_upstream()
    if args.side_by_side:
        try:
            wait_ready(f"http://127.0.0.1:{upstream_port}/v1/chat/completions")
            for conc in args.concurrency:
                side_by_side(setups, upstream_port, args.path, conc, args.rounds, args.seconds, args.servers)
        finally:
            upstream.terminate()
        return
    if args.interleaved:
        try:
            wait_ready(f"http://127.0.0.1:{upstream_port}/v1/chat/completions")
            interleaved(setups, upstream_port, args.path, args.interleaved)
        finally:
            upstream.terminate()
        return
    if args.rss:
        try:
            wait_ready(f"http://127.0.0.1:{upstream_port}/v1/chat/completions")
            rss_run(upstream_port, args.path, args.rss)
        finally:
            upstream.terminate()
        return
    # `--servers N`: N processes of each setup, rounds over all of them, medians pooled per setup; two processes of
    # the same code and setup differ by up to ~2% on one machine (their memory layout), up to ~7% on another
    servers = [(name, *start(upstream_port, *setups[name])) for _ in range(args.servers) for name in setups]
    body = BODIES[args.path]
    try:
        wait_ready(f"http://127.0.0.1:{upstream_port}/v1/chat/completions")
        for _, _, port in servers:
            wait_ready(f"http://127.0.0.1:{port}/api/v1/chat")
        for conc in args.concurrency:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in setups}
            each: dict[int, list[float]] = {port: [] for _, _, port in servers}
            for i in range(args.rounds):
                for name, proc, port in (servers if i % 2 == 0 else servers[::-1]):
                    measured(proc.pid, port, args.path, body, conc, 1)  # warm-up
                    runs[name].append(measured(proc.pid, port, args.path, body, conc, args.seconds))
                    each[port].append(runs[name][-1]["rps"])
            med = {n: {k: statistics.median(r[k] for r in v) for k in ("rps", "p50_ms", "cpu_us")}
                   for n, v in runs.items()}
            for name, m in med.items():
                print(f"c={conc:<3} {name:9}  rps {m['rps']:7.0f}  p50 {m['p50_ms']:7.3f} ms  "
                      f"cpu {m['cpu_us']:6.0f} us/req  (rounds: {[round(r['rps']) for r in runs[name]]})", flush=True)
            if args.servers > 1:
                print(f"c={conc:<3} each server's median rps: " + ", ".join(
                    f"{name} {statistics.median(each[port]):.0f}" for name, _, port in servers), flush=True)
            off = med["off"]
            for name, on in med.items():
                if name != "off":
                    what = "governance costs" if name == "on" else f"{name} costs"
                    print(f"c={conc:<3} {what}: rps {100 * (on['rps'] / off['rps'] - 1):+.1f}%, "
                          f"p50 {on['p50_ms'] - off['p50_ms']:+.3f} ms, cpu {on['cpu_us'] - off['cpu_us']:+.0f} "
                          f"us/req; paired by round: {paired(runs[name], runs['off'], args.servers)}, "
                          f"p50 {paired_p50(runs[name], runs['off'])}", flush=True)
    finally:
        for _, proc, _ in servers:
            proc.terminate()
        upstream.terminate()


if __name__ == "__main__":
    main()
