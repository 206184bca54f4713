"""Instructions per response start + body send: uvicorn's RequestResponseCycle against rhetor.api.head.FastHeadCycle.

Each cycle is driven by hand (no event loop, no socket: a transport that drops the bytes) with a head modelled on
the OpenAI front's reply (server and date, content-type, content-length, five x-rhetor-* headers, x-request-id,
x-rhetor-overhead-ms; `on` adds the six x-ratelimit-* headers of a caller key). With them, `lines` is FastHeadCycle
given the six as one block of header lines (rhetor.api.header_lines: how Rhetor's server gets them since round 9).
Counted by callgrind: a run of N responses minus a run of none, divided by N — repeatable to a few instructions,
whatever the machine's load.

    .venv/bin/python benchmarks/response_head.py [--n 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

DEFAULTS = [(b"date", b"Tue, 01 Dec 2026 09:19:29 GMT"), (b"server", b"uvicorn")]
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"412"), (b"x-rhetor-provider", b"openai"),
           (b"x-rhetor-model", b"gpt-5.4-mini"), (b"x-rhetor-fallback", b"false"),
           (b"x-rhetor-simulated", b"false"), (b"x-rhetor-passthrough", b"true")]
LIMITS = [(b"x-ratelimit-limit-requests", b"100000"), (b"x-ratelimit-remaining-requests", b"99990"),
          (b"x-ratelimit-reset-requests", b"1ms"), (b"x-ratelimit-limit-tokens", b"10000000"),
          (b"x-ratelimit-remaining-tokens", b"9999000"), (b"x-ratelimit-reset-tokens", b"6ms")]
TAIL = [(b"x-request-id", b"0123456789ab-12345"), (b"x-rhetor-overhead-ms", b"0.412")]


class Dropping:
    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def child(kind: str, n: int, governance: bool) -> None:
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from rhetor.api.head import FastHeadCycle
    from rhetor.api.header_lines import NAME

    cls = RequestResponseCycle if kind == "uvicorn" else FastHeadCycle
    limits = [(NAME, b"".join(b"\r\n%s: %s" % pair for pair in LIMITS))] if kind == "lines" else LIMITS
    transport: Any = Dropping()
    flow, logger, event = FlowControl(transport), logging.getLogger("bench"), asyncio.Event()
    scope: Any = {"type": "http", "method": "POST", "http_version": "1.1"}
    start = {"type": "http.response.start", "status": 200, "headers": HEADERS + (limits if governance else []) + TAIL}
    body = {"type": "http.response.body", "body": b"x" * 412}
    for _ in range(n):
        cycle = cls(scope, transport, flow, logger, logger, False, DEFAULTS, event, False, True, lambda: None)
        for message in (start, body):
            try:
                cycle.send(message).send(None)  # type: ignore[arg-type]
            except StopIteration:
                pass


def counted(kind: str, n: int, governance: bool) -> int:
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, "--child",
            kind, str(n)] + (["--governance"] if governance else [])
    err = subprocess.run(argv, capture_output=True, text=True, env={"PYTHONHASHSEED": "0", "PYTHONPATH":
                         str(Path(__file__).resolve().parents[1])}).stderr
    found = re.search(r"Collected : (\d+)", err)
    if found is None:
        raise SystemExit(f"callgrind failed: {err[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--governance", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.governance)
        return
    for governance in (False, True):
        headers = len(DEFAULTS + HEADERS + TAIL) + (len(LIMITS) if governance else 0)
        for kind in ("uvicorn", "fast", "lines") if governance else ("uvicorn", "fast"):
            per = (counted(kind, args.n, governance) - counted(kind, 0, governance)) / args.n
            print(f"{kind:8} {headers:2} headers  {per / 1000:6.1f} k instructions/response", flush=True)


if __name__ == "__main__":
    main()
