"""The upstream client alone under callgrind: `HttpUpstream.request_bytes` (what a non-streamed chat's provider
call does: the JSON body, aiohttp's request and response, the pooled keep-alive connection) against
benchmarks/upstream.py, instructions per request, the event loop's share included.

    .venv/bin/python benchmarks/upstream_client.py [--n 1000]      # k instructions/request
    .venv/bin/python benchmarks/upstream_client.py --profile       # cProfile instead (no valgrind)

The in-process `instructions.py` figures carry the whole app; this isolates rhetor/providers/aio*.py and
http.py, to judge a change there to ±0.5k. Knows HttpUpstream's interface; nothing of providers or fronts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import PY, ROOT, free_port, wait_ready

PAYLOAD = {"model": "gpt-5.4-mini", "messages": [{"role": "user", "content": "hi"}]}


def callgrind(*args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(os.getpid())], capture_output=True, check=False)


async def drive(port: int, n: int, profile: bool) -> None:
    from rhetor.providers.http import HttpUpstream

    up = HttpUpstream("openai", f"http://127.0.0.1:{port}/v1", {"authorization": "Bearer bench"}, timeout_s=60,
                      connect_timeout_s=10)
    for _ in range(200):
        await up.request_bytes("POST", "/chat/completions", PAYLOAD, model="m")
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    else:
        callgrind("-i", "on")
    for _ in range(n):
        await up.request_bytes("POST", "/chat/completions", PAYLOAD, model="m")
    if prof is not None:
        import pstats
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(40)
    else:
        callgrind("-i", "off")
        callgrind("-d")
    await up.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)  # the upstream's port
    args = ap.parse_args()
    if args.child:
        import uvloop
        sys.path.insert(0, str(ROOT))  # this checkout's rhetor
        uvloop.run(drive(args.child, args.n, args.profile))
        return
    port = free_port()
    upstream = subprocess.Popen([PY, str(ROOT / "benchmarks" / "upstream.py"), str(port)])
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/chat/completions")
        cmd = [PY, __file__, "--child", str(port), "--n", str(args.n)]
        if args.profile:
            subprocess.run([*cmd, "--profile"], check=True)
            return
        out = tempfile.mktemp(prefix="rhetor-cg-client-")
        subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *cmd],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")})
        best = 0
        for f in Path(out).parent.glob(Path(out).name + "*"):
            for line in f.read_text(errors="replace").splitlines():
                if line.startswith(("summary:", "totals:")):
                    best = max(best, int(line.split()[1]))
            f.unlink()
        print(f"upstream client  {best / args.n / 1e3:.1f} k instructions/request")
    finally:
        upstream.kill()


if __name__ == "__main__":
    main()
