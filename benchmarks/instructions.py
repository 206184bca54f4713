"""Instructions per request, counted by valgrind's callgrind: a figure that does not move with the machine's load.

On a shared 2-core machine wall-clock and even CPU-time figures swing by ±30% from run to run; instruction counts
repeat to ±1%. So each change to the hot path can be judged alone, while other work runs, and the ratio to the
floor proxy (benchmarks/floor.py) read without a quiet machine. Instructions are not time (cache misses and
syscalls are not in them), so headline figures still come from benchmarks/run.py; this is the profiler's ruler.

Two ways to count, both against the zero-delay upstream (benchmarks/upstream.py, its own process, not counted):

- `--where app` (default): the ASGI app driven in this process, no HTTP server: only the app's own work and its
  upstream client. Instrumentation is switched on (callgrind_control) after a warm-up, for the measured loop only.
- `--where server`: the real server (`python -m rhetor`, or the floor) under callgrind, loaded over loopback by
  benchmarks/load.py at `--concurrency`, uvicorn's and the kernel interface's work included: the figure to set
  beside the floor's.

`--syscalls` runs the app in process with `strace -c` attached after the warm-up and prints system calls per
request (each `getpid` on CPython 3.11 is an `asyncio.get_running_loop()`, each `epoll_pwait` a loop turn);
`--syscalls --where server` the real server at c=1 (`--concurrency`), uvicorn's writes included.

`--bytecodes` counts the bytecodes each Python function executes per request, in process (benchmarks/bytecodes.py):
deterministic like callgrind, and by function; with `--governance on off`, the difference per function.

`--profile` instead runs the app in process under cProfile and prints calls per request and the top functions
(and, for each name in RHETOR_PROFILE_CALLERS=a,b, the functions calling it; RHETOR_PROFILE_DUMP=file writes the
pstats for a sort of your own, e.g. inclusive time per Rhetor function). RHETOR_CALLGRIND_KEEP=folder keeps callgrind's
files there for `callgrind_annotate` (C functions: SQLite, regex, the eval loop); RHETOR_CALLGRIND_ARGS adds
valgrind options to `--where server` (`--separate-threads=yes`: a file per thread, e.g. the ledger's writer).

    .venv/bin/python benchmarks/instructions.py oa an native [--where server] [--target floor] [--env VAR=VALUE]
    .venv/bin/python benchmarks/instructions.py oa --profile [--top 40]
    .venv/bin/python benchmarks/instructions.py oa native --governance on off   # issue 9: each, then on - off

`--governance on|off` sets Rhetor up as benchmarks/governance.py does (run.py's GOVERNANCE_ENV; `on` with the
caller key `bench`, limits set but never reached) and, given both, prints the difference per kind. Counted in
process, the SQLite ledger's worker thread included (callgrind counts every thread). Use `--n 1000`: ±1k.

Kinds: native, native-stream, oa, oa-stream, oaanth, oaanth-stream, an, an-stream (as in run.py's table).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bytecodes
from run import GOVERNANCE_ENV, PY, ROOT, free_port, seed_bench_key, wait_ready

OA = {"model": "openai/gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}
AN = {"model": "anthropic/claude-sonnet-5-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
DIRECT_OA = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}
DIRECT_AN = {"model": "claude-sonnet-5-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
# kind -> (Rhetor's path, Rhetor's body, the floor's (= upstream's) path, its body)
KINDS: dict[str, tuple[str, dict[str, Any], str, dict[str, Any]]] = {
    "native": ("/api/v1/chat", {"message": "hi"}, "/v1/chat/completions", DIRECT_OA),
    "oa": ("/v1/chat/completions", OA, "/v1/chat/completions", DIRECT_OA),
    "oaanth": ("/v1/chat/completions", {**OA, "model": AN["model"]}, "/v1/messages", DIRECT_AN),
    "an": ("/v1/messages", AN, "/v1/messages", DIRECT_AN),
}


def request_of(kind: str, target: str) -> tuple[str, bytes]:
    base, _, stream = kind.partition("-")
    path, body, f_path, f_body = KINDS[base]
    if target == "floor":
        path, body = f_path, dict(f_body)
    else:
        body = dict(body)
    if stream:
        if target == "rhetor" and base == "native":
            path = "/api/v1/chat/stream"
        else:
            body["stream"] = True
    return path, json.dumps(body).encode()


def environment(upstream: int, data: Path, extra: dict[str, str]) -> dict[str, str]:
    tasks = data / "tasks.json"
    tasks.write_text(json.dumps({"default": {"targets": [{"provider": "openai", "model": "gpt-5.4-mini",
                                                           "retries": 0}], "simulated_fallback": False}}))
    return {"OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": f"http://127.0.0.1:{upstream}/v1",
            "ANTHROPIC_API_KEY": "bench", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{upstream}",
            "RHETOR_DATA_DIR": str(data), "RHETOR_TASK_CONFIG": str(tasks), "RHETOR_LOG_LEVEL": "warning",
            "RHETOR_HERMES": "0", "RHETOR_EMBEDDER": "none", "OLLAMA_HOST": "http://127.0.0.1:9", **extra}


def totals(out: str) -> int:
    """The largest `summary:`/`totals:` figure over callgrind's output files (the dump holds the measured part)."""
    best, keep = 0, os.environ.get("RHETOR_CALLGRIND_KEEP")  # a folder: the files are moved there (annotate)
    for f in Path(out).parent.glob(Path(out).name + "*"):
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                best = max(best, int(line.split()[1]))
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            f.rename(Path(keep) / f.name)
        else:
            f.unlink()
    return best


def callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


# ---------------------------------------------------------------- in process (the child under valgrind runs this)

async def started(app: Any) -> Callable[[], Awaitable[None]]:
    """Run `app`'s lifespan startup; answer the coroutine function that shuts it down (ttfb.py uses it too)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get,
                                   outbox.put))
    await outbox.get()

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await life
    return stop


def bench_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    """A benchmark POST's headers (the caller key `bench`), made once and shared by every request."""
    return [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()), (b"authorization", b"Bearer bench")]


async def drive_app(kind: str, target: str, n: int, warm: int, mode: str, top: int, upstream: int) -> None:
    path, body = request_of(kind, target)
    if target == "floor":
        from floor import Floor
        app: Any = Floor(f"http://127.0.0.1:{upstream}")
    else:
        from rhetor.api.app import create_app
        from rhetor.settings import Settings
        app = create_app(Settings.from_env())
    stop = await started(app)
    headers = bench_headers(body)

    async def one() -> None:
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": headers, "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 8000), "state": {}}
        await app(scope, receive, send)
        if statuses != [200]:
            raise RuntimeError(f"{kind}: status {statuses}")

    for _ in range(warm):
        await one()
    if mode == "profile":
        import cProfile
        import pstats
        prof = cProfile.Profile(time.thread_time)
        prof.enable()
        for _ in range(n):
            await one()
        prof.disable()
        stats = pstats.Stats(prof)
        calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        print(f"{target} {kind}: {calls / n:.0f} Python calls per request")
        if os.environ.get("RHETOR_PROFILE_DUMP"):
            stats.dump_stats(os.environ["RHETOR_PROFILE_DUMP"])
        stats.sort_stats("tottime").print_stats(top)
        for name in filter(None, os.environ.get("RHETOR_PROFILE_CALLERS", "").split(",")):
            stats.print_callers(name)  # who calls it, and how often: RHETOR_PROFILE_CALLERS=get_running_loop,sleep
    elif mode == "bytecodes":
        from bytecodes import dump, traced
        dump(await traced(one, n), os.environ["RHETOR_BYTECODES_OUT"])
    elif mode == "syscalls":
        out = tempfile.mktemp(prefix="rhetor-strace-")
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(os.getpid()), "-o", out],  # noqa: ASYNC220
                                  stderr=subprocess.PIPE, text=True)  # blocking on purpose: nothing to count yet
        assert tracer.stderr is not None
        tracer.stderr.readline()  # "strace: Process N attached ...": counting from here
        for _ in range(n):
            await one()
        tracer.send_signal(signal.SIGINT)
        tracer.wait(60)
        print_syscalls(target, kind, Path(out), n)
    else:
        callgrind(os.getpid(), "-i", "on")
        for _ in range(n):
            await one()
        callgrind(os.getpid(), "-i", "off")
        callgrind(os.getpid(), "-d")
    await stop()


def print_syscalls(target: str, kind: str, out: Path, n: int, where: str = "app") -> None:
    """strace -c's table as calls per request: the total, then each system call made at least once in 100."""
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        parts = line.split()
        if len(parts) in (5, 6) and parts[-1] != "total" and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    out.unlink()
    each = ", ".join(f"{name} {c / n:.2f}" for name, c in sorted(counts.items(), key=lambda kv: -kv[1])
                     if c / n >= 0.01)
    print(f"{target:6} {where:6} {kind:14} {sum(counts.values()) / n:8.2f} system calls/request: {each}", flush=True)


def child(args: argparse.Namespace) -> None:
    import uvloop
    sys.path.insert(0, str(ROOT))  # this checkout's rhetor, whichever checkout the venv's editable install names
    mode = "profile" if args.profile else "syscalls" if args.syscalls else "bytecodes" if args.bytecodes else "count"
    uvloop.run(drive_app(args.kinds[0], args.target, args.n, args.warm, mode, args.top, args.upstream))


# ---------------------------------------------------------------- the parent

def count_app(kind: str, args: argparse.Namespace, env: dict[str, str]) -> float:
    out = tempfile.mktemp(prefix="rhetor-cg-", suffix=".out")
    cmd = [PY, __file__, kind, "--child", "--n", str(args.n), "--warm", str(args.warm), "--target", args.target,
           "--upstream", str(args.upstream)]
    if args.profile or args.syscalls:
        cmd += ["--profile", "--top", str(args.top)] if args.profile else ["--syscalls"]
        subprocess.run(cmd, env={**os.environ, **env}, check=True)
        return 0.0
    if args.bytecodes:
        subprocess.run([*cmd, "--bytecodes"], env={**os.environ, **env, "RHETOR_BYTECODES_OUT": out}, check=True)
        args.traced[kind, args.setup] = bytecodes.load(out)
        return 0.0
    subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *cmd],
                   env={**os.environ, **env}, check=True, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return totals(out) / int(args.n)


@contextlib.contextmanager
def served(kind: str, args: argparse.Namespace, env: dict[str, str],
           wrap: list[str]) -> Iterator[tuple[subprocess.Popen[bytes], int, str, Any, dict[str, float]]]:
    """The target's server (under `wrap`, e.g. valgrind) for `kind`: (process, port, path, body, the load's
    summary to fill); stopped at the end, and an error if the load saw any."""
    path, body = request_of(kind, args.target)
    port = free_port()
    argv = [PY, "-m", "rhetor"] if args.target == "rhetor" else \
        [PY, str(ROOT / "benchmarks" / "floor.py"), str(port), f"http://127.0.0.1:{args.upstream}"]
    proc = subprocess.Popen([*wrap, *argv], env={**os.environ, **env, "RHETOR_PORT": str(port)}, cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    stats: dict[str, float] = {}
    try:
        yield proc, port, path, body, stats
    finally:
        proc.terminate()
        proc.wait(60)
    if stats.get("errors"):
        raise RuntimeError(f"{kind}: {int(stats['errors'])} errors")


def count_server(kind: str, args: argparse.Namespace, env: dict[str, str]) -> float:
    from load import run_load
    out = tempfile.mktemp(prefix="rhetor-cg-", suffix=".out")
    wrap = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
            *os.environ.get("RHETOR_CALLGRIND_ARGS", "").split()]  # e.g. --separate-threads=yes
    with served(kind, args, env, wrap) as (proc, port, path, body, stats):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                wait_ready(f"http://127.0.0.1:{port}{path}")
                break
            except RuntimeError:
                continue
        asyncio.run(run_load("127.0.0.1", port, path, body, concurrency=args.concurrency, seconds=3))  # warm-up
        callgrind(proc.pid, "-i", "on")
        stats.update(asyncio.run(run_load("127.0.0.1", port, path, body, concurrency=args.concurrency,
                                          seconds=args.seconds)).summary())
        callgrind(proc.pid, "-i", "off")
        callgrind(proc.pid, "-d")
        time.sleep(1)
    return totals(out) / max(1.0, float(stats["requests"]))


def syscalls_server(kind: str, args: argparse.Namespace, env: dict[str, str]) -> float:
    """The real server (no valgrind) at c=1 (`--concurrency`): `strace -c -f` attached after a warm-up, one
    request at a time for `--n` requests; uvicorn's and the kernel interface's calls included."""
    from load import run_load
    out = tempfile.mktemp(prefix="rhetor-strace-")
    with served(kind, args, env, []) as (proc, port, path, body, stats):
        wait_ready(f"http://127.0.0.1:{port}{path}")
        asyncio.run(run_load("127.0.0.1", port, path, body, concurrency=args.concurrency, seconds=2))  # warm-up
        tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(proc.pid), "-o", out],
                                  stderr=subprocess.PIPE, text=True)
        assert tracer.stderr is not None
        tracer.stderr.readline()  # "strace: Process N attached": counting from here
        time.sleep(0.5)  # (every thread attached)
        stats.update(asyncio.run(run_load("127.0.0.1", port, path, body, concurrency=args.concurrency,
                                          seconds=600, max_requests=args.n)).summary())
        tracer.send_signal(signal.SIGINT)
        tracer.wait(60)
    print_syscalls(args.target, kind, Path(out), int(stats["requests"]), "server")
    return 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kinds", nargs="+", choices=[k + s for k in KINDS for s in ("", "-stream")])
    ap.add_argument("--where", choices=["app", "server"], default="app")
    ap.add_argument("--target", choices=["rhetor", "floor"], default="rhetor")
    ap.add_argument("--n", type=int, default=300, help="requests counted (app)")
    ap.add_argument("--warm", type=int, default=100, help="requests before counting (app)")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds counted (server)")
    ap.add_argument("--concurrency", type=int, default=32, help="connections (server)")
    ap.add_argument("--env", nargs="*", default=[], metavar="VAR=VALUE", help="extra environment for Rhetor")
    ap.add_argument("--bench-key", action="store_true", help="require the caller key 'bench' (as run.py's)")
    ap.add_argument("--governance", nargs="+", default=[], choices=sorted(GOVERNANCE_ENV),
                    help="issue 9's governance on / off, as benchmarks/governance.py (both: and their difference)")
    ap.add_argument("--profile", action="store_true", help="cProfile in process instead of counting")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--syscalls", action="store_true",
                    help="system calls per request (strace -c attached after the warm-up): in process, or "
                         "with --where server the real server at c=1")
    ap.add_argument("--bytecodes", action="store_true",
                    help="bytecodes per request by Python function, in process (benchmarks/bytecodes.py)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--upstream", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    args.traced = {}  # (kind, setup) -> bytecodes.Counts (--bytecodes)
    if args.profile:
        args.n, args.warm = max(args.n, 2000), max(args.warm, 300)
    if args.syscalls and args.where == "server" and "--concurrency" not in sys.argv:
        args.concurrency = 1
    args.upstream = free_port()
    upstream = subprocess.Popen([PY, str(ROOT / "benchmarks" / "upstream.py"), str(args.upstream)])
    try:
        wait_ready(f"http://127.0.0.1:{args.upstream}/v1/chat/completions")
        counted: dict[tuple[str, str], float] = {}
        for setup in args.governance or [""]:
            args.setup = setup
            data = Path(tempfile.mkdtemp(prefix="rhetor-instr-"))
            extra = {**GOVERNANCE_ENV.get(setup, {}), **dict(kv.split("=", 1) for kv in args.env)}
            env = environment(args.upstream, data, extra)
            if args.bench_key or setup == "on":
                asyncio.run(seed_bench_key(data))
            for kind in args.kinds:
                how = syscalls_server if args.where == "server" and args.syscalls else \
                    count_server if args.where == "server" else count_app
                n = counted[setup, kind] = how(kind, args, env)
                if args.bytecodes:
                    bytecodes.show(f"{kind} {setup}".strip(), args.traced[kind, setup], args.top)
                elif not (args.profile or args.syscalls):
                    label = f"  governance {setup}" if setup else ""
                    print(f"{args.target:6} {args.where:6} {kind:14} {n / 1e3:8.0f} k instructions/request{label}"
                          f"{'  ' + ' '.join(args.env) if args.env else ''}"
                          f"{'  bench-key' if args.bench_key else ''}", flush=True)
        if len(args.governance) == 2 and args.bytecodes:
            for kind in args.kinds:
                bytecodes.difference(f"{kind} governance on - off", args.traced[kind, "on"],
                                     args.traced[kind, "off"], args.top)
        elif len(args.governance) == 2 and not (args.profile or args.syscalls):
            for kind in args.kinds:
                on, off = counted["on", kind], counted["off", kind]
                print(f"{kind:14} governance on - off: {(on - off) / 1e3:+.0f} k instructions/request "
                      f"({100 * (on / off - 1):+.1f}%)", flush=True)
    finally:
        upstream.kill()


if __name__ == "__main__":
    main()
