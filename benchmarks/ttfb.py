"""A stream's time to first byte, split into stages, in process: what the app does before the caller's first byte.

The ASGI app (Rhetor, or the floor proxy of benchmarks/floor.py) is driven in this process, as
benchmarks/instructions.py does, against the zero-delay upstream (benchmarks/upstream.py, its own process). Each
streamed request is cut at three marks besides its start:

    arrival ──► upstream POST called ──► upstream answer's head received ──► first body byte sent to the server
      "before"            "client" (aiohttp: send, wait, head)     "after"

`--mode time` (default): `time.perf_counter_ns` at each mark, medians over `--n` requests (wall clock: moves with
the machine's load; the app runs on CPU 0, the upstream on CPU 1). `--mode callgrind`: instructions per stage
under valgrind, a figure that does not move with the load: each mark is a call to a C builtin nothing else on the
path calls (math.erf, erfc, lgamma, gamma: a ctypes call's target is not seen as a function entry by callgrind),
and callgrind zeroes its counters at the first (`--zero-before`) and dumps them at the others (`--dump-before`):
one file per stage and request, medians over `--n` requests. The client stage's figure is the client's own work
plus the loop's idle polling while the upstream answers. `--mode calls`: the Python functions and C calls each
stage runs, per request (a coroutine's resume counts as a call); `--mode profile`: cProfile of each stage;
`--mode opcodes`: the bytecodes each Python function executes in each stage, per request (`sys.settrace` with
opcode events; a dataclass's generated `__init__` named by its class) — where a stage's instructions go, since
callgrind sees only the interpreter's C functions.

    PYTHONPATH=. .venv/bin/python benchmarks/ttfb.py oa-stream an-stream native-stream [--target floor]
    PYTHONPATH=. .venv/bin/python benchmarks/ttfb.py oa-stream --mode callgrind --n 200
    PYTHONPATH=. .venv/bin/python benchmarks/ttfb.py oa-stream --mode profile --n 3000 --top 40
    PYTHONPATH=. .venv/bin/python benchmarks/ttfb.py oa-stream --mode opcodes --n 200 --top 40

The marks are patched in from outside (the upstream POST wrapped, the driver's `send`): nothing in rhetor knows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from instructions import KINDS, bench_headers, environment, request_of, started
from run import PY, ROOT, free_port, pinned, wait_ready

STAGES = ("before", "client", "after")
MARKS = ("erf", "erfc", "lgamma", "gamma")  # math's builtins, callgrind's function names math_erf, ...


async def drive(kind: str, target: str, n: int, warm: int, upstream: int, mode: str, top: int) -> None:
    path, body = request_of(kind, target)
    stamps: list[int] = []
    armed = False
    if mode == "callgrind":
        import math
        calls = [getattr(math, m) for m in MARKS]

        def mark(i: int) -> None:
            if armed:
                calls[i](1.0)
    elif mode == "calls":
        stage = [-1]
        seen: list[Counter[str]] = [Counter() for _ in STAGES]

        def hook(frame: Any, event: str, arg: Any) -> None:
            if event == "call" and 0 <= stage[0] < 3:
                code = frame.f_code
                seen[stage[0]][f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_name}"] += 1
            elif event == "c_call" and 0 <= stage[0] < 3:
                seen[stage[0]][f"C {getattr(arg, '__qualname__', arg)}"] += 1

        def mark(i: int) -> None:
            if armed:
                stage[0] = i if i < 3 else -1
                sys.setprofile(hook if i < 3 else None)
    elif mode == "opcodes":
        stage = [-1]
        seen = [Counter() for _ in STAGES]

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode" and 0 <= stage[0] < 3:
                code = frame.f_code
                where = code.co_filename.rsplit('/', 2)[-1]
                if where == "<string>":
                    where += type(frame.f_locals.get("self")).__name__
                seen[stage[0]][f"{where}:{code.co_firstlineno}:{code.co_name}"] += 1
            return local

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            frame.f_trace_opcodes = True
            return local

        def mark(i: int) -> None:
            if armed:
                stage[0] = i if i < 3 else -1
                sys.settrace(tracer if i < 3 else None)
                if i < 3:
                    f = sys._getframe(1)
                    while f is not None:
                        f.f_trace_opcodes = True
                        f.f_trace = local
                        f = f.f_back
    elif mode == "profile":
        import cProfile
        profiles = [cProfile.Profile(time.thread_time) for _ in STAGES]

        def mark(i: int) -> None:
            if armed:
                if i:
                    profiles[i - 1].disable()
                if i < 3:
                    profiles[i].enable()
    else:
        clock = time.perf_counter_ns

        def mark(i: int) -> None:
            if armed:
                stamps.append(clock())

    if target == "floor":
        import aiohttp
        from floor import Floor
        request = aiohttp.ClientSession._request

        async def floor_request(*a: Any, **kw: Any) -> Any:
            mark(1)
            response = await request(*a, **kw)
            mark(2)
            return response

        aiohttp.ClientSession._request = floor_request  # type: ignore[method-assign]
        app: Any = Floor(f"http://127.0.0.1:{upstream}")
    else:
        from rhetor.providers import aio_request
        post = aio_request.post

        async def rhetor_post(*a: Any) -> Any:
            mark(1)
            response = await post(*a)
            mark(2)
            return response

        aio_request.post = rhetor_post  # type: ignore[assignment]  (read when the provider's session is made)
        from rhetor.api.app import create_app
        from rhetor.settings import Settings
        app = create_app(Settings.from_env())
    stop = await started(app)
    headers = bench_headers(body)

    async def one() -> None:
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        statuses: list[int] = []
        first = [True]

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            elif first[0] and message.get("body"):
                first[0] = False
                mark(3)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000), "state": {}}
        mark(0)
        await app(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"{kind}: status {statuses}")

    for _ in range(warm):
        await one()
    armed = True
    for _ in range(n):
        await one()
    armed = False
    if mode == "time":
        if len(stamps) != 4 * n:
            raise RuntimeError(f"{kind}: {len(stamps)} marks for {n} requests (one upstream POST each expected)")
        per = [[(stamps[4 * i + s + 1] - stamps[4 * i + s]) / 1e3 for i in range(n)] for s in range(3)]
        whole = [(stamps[4 * i + 3] - stamps[4 * i]) / 1e3 for i in range(n)]
        print(f"{target:6} {kind:14} µs, medians of {n}: " +
              "  ".join(f"{name} {statistics.median(v):6.1f}" for name, v in zip(STAGES, per, strict=True)) +
              f"  first byte {statistics.median(whole):6.1f}", flush=True)
    if mode == "profile":
        import pstats
        for name, prof in zip(STAGES, profiles, strict=True):
            print(f"---- {target} {kind} {name}")
            pstats.Stats(prof).sort_stats("tottime").print_stats(top)
            for who in filter(None, os.environ.get("TTFB_CALLERS", "").split(",")):
                pstats.Stats(prof).print_callers(who)
    if mode in ("calls", "opcodes"):
        for name, counts in zip(STAGES, seen, strict=True):
            print(f"{target} {kind} {name}: {sum(counts.values()) / n:.0f} {mode} a request")
            for fn, c in counts.most_common(top):
                print(f"    {c / n:6.1f}  {fn}")
    await stop()


def stage_counts(out: str, n: int) -> list[float]:
    """Medians over the requests of each stage's instructions, from callgrind's one file per dump."""
    per: dict[str, list[int]] = {f"math_{m}": [] for m in MARKS[1:]}
    for f in Path(out).parent.glob(Path(out).name + ".*"):
        trigger, total = "", 0
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith("desc: Trigger:"):
                trigger = line.split()[-1]
            elif line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
        keep = os.environ.get("RHETOR_CALLGRIND_KEEP")  # a folder: the files are moved there (callgrind_annotate)
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            f.rename(Path(keep) / f.name)
        else:
            f.unlink()
        for m in per:
            if trigger == f"--dump-before={m}":
                per[m].append(total)
    for m, v in per.items():
        if len(v) != n:
            raise RuntimeError(f"{m}: {len(v)} dumps for {n} requests")
    return [statistics.median(v) for v in per.values()]


def run(kind: str, args: argparse.Namespace, env: dict[str, str]) -> None:
    cmd = [PY, __file__, kind, "--child", "--n", str(args.n), "--warm", str(args.warm), "--target", args.target,
           "--upstream", str(args.upstream), "--mode", args.mode]
    if args.mode != "callgrind":
        subprocess.run(pinned(0, [*cmd, "--top", str(args.top)]), env={**os.environ, **env}, check=True)
        return
    out = tempfile.mktemp(prefix="rhetor-ttfb-cg-", suffix=".out")
    triggers = [f"--zero-before=math_{MARKS[0]}", *(f"--dump-before=math_{m}" for m in MARKS[1:])]
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *triggers, *cmd],
                   env={**os.environ, **env}, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    counts = stage_counts(out, args.n)
    print(f"{args.target:6} {kind:14} k instructions, medians of {args.n}: " +
          "  ".join(f"{name} {c / 1e3:6.1f}" for name, c in zip(STAGES, counts, strict=True)) +
          f"  first byte {sum(counts) / 1e3:6.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kinds", nargs="+", choices=[k + "-stream" for k in KINDS])
    ap.add_argument("--target", choices=["rhetor", "floor"], default="rhetor")
    ap.add_argument("--mode", choices=["time", "callgrind", "calls", "profile", "opcodes"], default="time",
                    help="calls: the Python functions (and C calls) each stage runs, per request; profile: "
                         "cProfile of each stage (thread time); opcodes: bytecodes per function and stage")
    ap.add_argument("--top", type=int, default=1000, help="(calls) functions listed per stage")
    ap.add_argument("--n", type=int, default=0, help="requests measured (default 3000 time, 200 callgrind)")
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--env", nargs="*", default=[], metavar="VAR=VALUE", help="extra environment for Rhetor")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--upstream", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.n = args.n or (3000 if args.mode == "time" else 200)
    if args.child:
        import uvloop
        sys.path.insert(0, str(ROOT))  # this checkout's rhetor, whichever checkout the venv's editable install names
        uvloop.run(drive(args.kinds[0], args.target, args.n, args.warm, args.upstream, args.mode, args.top))
        return
    args.upstream = free_port()
    upstream = subprocess.Popen(pinned(1, [PY, str(ROOT / "benchmarks" / "upstream.py"), str(args.upstream)]))
    try:
        wait_ready(f"http://127.0.0.1:{args.upstream}/v1/chat/completions")
        env = environment(args.upstream, Path(tempfile.mkdtemp(prefix="rhetor-ttfb-")),
                          dict(kv.split("=", 1) for kv in args.env))
        for kind in args.kinds:
            run(kind, args, env)
    finally:
        upstream.kill()


if __name__ == "__main__":
    main()
