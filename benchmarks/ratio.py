"""Rhetor against the floor proxy in alternating rounds: the ratio issue 13 asks for, with its spread.

benchmarks/run.py measures Rhetor then the floor once per row; on a machine whose speed drifts by ±15% between runs a
single pair can land either side of a target. Here Rhetor and the floor (benchmarks/floor.py) run side by side,
both pinned to CPU 0 (the upstream and the load generator on CPU 1), and are measured in alternating rounds
(rhetor, floor, floor, rhetor, ...) at each concurrency: each line gives the medians of requests/s, p50, time to
first byte and CPU time per request, then Rhetor as a share of the floor, and the added latency of each over the
direct upstream at concurrency 1.

    .venv/bin/python benchmarks/ratio.py [--kinds oa an native oa-stream] [--concurrency 1 32] [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instructions import environment, request_of
from load import run_load
from run import PY, ROOT, free_port, measured, pinned, start_upstream, wait_ready

KEYS = ("rps", "p50_ms", "ttfb_p50_ms", "cpu_us")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", nargs="+", default=["oa", "an", "native", "oa-stream"])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    upstream, up = start_upstream()
    ports = {"rhetor": free_port(), "floor": free_port()}
    env = {**os.environ, **environment(up, Path(tempfile.mkdtemp(prefix="rhetor-ratio-")), {}),
           "RHETOR_PORT": str(ports["rhetor"])}
    servers = {"rhetor": subprocess.Popen(pinned(0, [PY, "-m", "rhetor"]), env=env, cwd=ROOT),
               "floor": subprocess.Popen(pinned(0, [PY, str(ROOT / "benchmarks" / "floor.py"), str(ports["floor"]),
                                                    f"http://127.0.0.1:{up}"]))}
    try:
        wait_ready(f"http://127.0.0.1:{up}/v1/chat/completions")
        wait_ready(f"http://127.0.0.1:{ports['rhetor']}/api/v1/chat")
        wait_ready(f"http://127.0.0.1:{ports['floor']}/v1/chat/completions")
        for kind in args.kinds:
            for conc in args.concurrency:
                runs: dict[str, list[dict[str, float]]] = {"rhetor": [], "floor": []}
                direct: list[dict[str, float]] = []
                for i in range(args.rounds):
                    for name in (("rhetor", "floor") if i % 2 == 0 else ("floor", "rhetor")):
                        path, body = request_of(kind, name)
                        measured(servers[name].pid, ports[name], path, body.decode(), conc, 1)  # warm-up
                        runs[name].append(measured(servers[name].pid, ports[name], path, body.decode(), conc,
                                                   args.seconds))
                    if conc == 1:
                        path, body = request_of(kind, "floor")
                        direct.append(asyncio.run(run_load("127.0.0.1", up, path, body, concurrency=1,
                                                           seconds=1)).summary())
                med = {n: {k: statistics.median(r.get(k, 0.0) for r in v) for k in KEYS} for n, v in runs.items()}
                r, f = med["rhetor"], med["floor"]
                line = (f"{kind:10} c={conc:<3} rhetor {r['rps']:6.0f} rps  floor {f['rps']:6.0f} rps  "
                        f"share {100 * r['rps'] / f['rps']:3.0f}% (by cpu {100 * f['cpu_us'] / r['cpu_us']:3.0f}%)  "
                        f"rounds {[round(x['rps']) for x in runs['rhetor']]} / "
                        f"{[round(x['rps']) for x in runs['floor']]}")
                if direct:
                    d = {k: statistics.median(x.get(k, 0.0) for x in direct) for k in ("p50_ms", "ttfb_p50_ms")}
                    line += (f"\n{'':15} added p50 rhetor {r['p50_ms'] - d['p50_ms']:.3f} ms, floor "
                             f"{f['p50_ms'] - d['p50_ms']:.3f} ms")
                    if "stream" in kind:
                        line += (f"; added ttfb rhetor {r['ttfb_p50_ms'] - d['ttfb_p50_ms']:.3f} ms, floor "
                                 f"{f['ttfb_p50_ms'] - d['ttfb_p50_ms']:.3f} ms")
                print(line, flush=True)
    finally:
        for proc in servers.values():
            proc.terminate()
        upstream.terminate()


if __name__ == "__main__":
    main()
