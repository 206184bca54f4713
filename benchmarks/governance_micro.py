"""Instructions per call of governance's per-request pieces, each alone, counted by valgrind's callgrind: the
ruler of round 7's governance changes (benchmarks/README.md), finer than `instructions.py` (±1-3k a request).

Each case is run in a child under callgrind for N and 3N calls after a warm-up; the difference over 2N is the
cost of one call, the loop's own (~0.9k: `empty`) included. Exact to ~0.05k between runs. Run it from a checkout
with PYTHONPATH set to it to count that checkout's code (e.g. main's, then a branch's, one after the other).

    PYTHONPATH=. .venv/bin/python benchmarks/governance_micro.py [case ...] [--n 2000]

Cases: empty, meter (Meter.start + Metered.answered, a null sink: a stream's way), meter_begin (Meter.begin +
Meter.answered: the non-streaming chat's, round 8), meter_base (what `meter` builds around them:
RunInfo, Attempt, Target), price_cost (PriceTable.cost), limiter (InProcessLimiter take + release + consume),
take, take_lines (its headers as one block of lines, round 9), key_middleware / open_middleware (ApiKeyMiddleware
with a limited virtual key / with no key configured, a no-op app inside; the scope offers rhetor.api.header_lines'
extension, as Rhetor's server does, and holds GatewayMiddleware's header dict: a key seen before takes the quick
way, round 12), key_middleware_asgi (not offered: any other ASGI server's way), book_record
(BudgetBook.record, one global warn budget), book_judge (applicable + judge).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Case = Callable[[], None]
ROOT = Path(__file__).resolve().parent.parent


def empty() -> Case:
    return lambda: None


def _run_info() -> Callable[[], Any]:
    from rhetor.routing.fallback import Attempt, RunInfo
    from rhetor.routing.router import Target

    def made() -> Any:
        info = RunInfo()
        info.attempts.append(Attempt("openai", "gpt-5.4-mini", "ok"))
        info.target = Target("openai", "gpt-5.4-mini")
        return info
    return made


def _meter_and_reply() -> tuple[Any, Any]:
    """A Meter over a null sink and the shipped prices, and an answer with its usage."""
    from rhetor.governance.meter import Meter
    from rhetor.governance.prices import load_prices
    from rhetor.types import ChatResponse, Usage

    class Sink:
        def record(self, rec: Any) -> None:
            return None

    reply = ChatResponse(content="hello there", provider="openai", model="gpt-5.4-mini", usage=Usage(12, 20))
    return Meter(Sink(), load_prices()), reply


def meter() -> Case:
    m, reply = _meter_and_reply()
    run_info = _run_info()

    def one() -> None:
        m.start("openai", "rid-1", "key_bench", None, "default", None, run_info(), time.perf_counter(), lambda: 5,
                "openai", "gpt-5.4-mini").answered(reply)
    return one


def meter_begin() -> Case:
    """The gateway's non-streaming chat since round 8: Meter.begin + Meter.answered, no Metered."""
    m, reply = _meter_and_reply()
    run_info = _run_info()

    def one() -> None:
        started = time.perf_counter()
        rec = m.begin("openai", "rid-1", "key_bench", None, "default", None, started, "openai", "gpt-5.4-mini")
        m.answered(rec, run_info(), started, reply, lambda: 5)
    return one


def meter_base() -> Case:
    run_info = _run_info()

    def one() -> None:
        run_info()
        time.perf_counter()
    return one


def price_cost() -> Case:
    from rhetor.governance.prices import load_prices
    from rhetor.types import Usage

    prices, usage = load_prices(), Usage(12, 20)

    def one() -> None:
        prices.cost("openai", "gpt-5.4-mini", usage)
    return one


def limiter() -> Case:
    from rhetor.governance.limits import InProcessLimiter

    lim = InProcessLimiter()

    def one() -> None:
        lim.take("key_bench", 10**9, 10**12, 50)
        lim.release("key_bench", 50)
        lim.consume("key_bench", 30)
    return one


def take() -> Case:
    from rhetor.governance.limits import InProcessLimiter

    lim = InProcessLimiter()

    def one() -> None:
        lim.take("key_bench", 10**9, 10**12, 50)
    return one


def take_lines() -> Case:
    from rhetor.governance.limits import InProcessLimiter

    lim = InProcessLimiter()

    def one() -> None:
        lim.take_lines("key_bench", 10**9, 10**12, 50)
    return one


def _middleware(keyed: bool, offered: bool = True) -> Case:
    from rhetor.api.auth import ApiKeyMiddleware
    from rhetor.governance.access import Access
    from rhetor.governance.keys import KeyRecord, digest
    from rhetor.settings import Settings

    access = Access(Settings.from_env())
    if keyed:
        access.ring.load([KeyRecord(id="key_bench", name="bench", digest=digest(b"bench"), hint="bench",
                                    created_at=time.time(), spec={"rpm": 10**9, "tpm": 10**12})])

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    mw = ApiKeyMiddleware(inner, access)
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"content-length", b"77"),
               (b"authorization", b"Bearer bench")]

    # as Rhetor's server offers it (rhetor.api.header_lines, round 9); not offered: any other ASGI server's way
    extensions: dict[str, Any] = {"rhetor.header_lines": {}} if offered else {}

    found = dict(headers)  # the header dict GatewayMiddleware leaves in the scope (rhetor.api.presented.HEADER_DICT)

    def one() -> None:
        call = mw({"type": "http", "path": "/v1/chat/completions", "method": "POST", "headers": headers,
                   "state": {}, "extensions": extensions, "rhetor.headers": found}, None, None)  # type: ignore[arg-type]
        try:
            call.send(None)  # never suspends: the inner app awaits nothing
        except StopIteration:
            pass
    return one


def key_middleware() -> Case:
    return _middleware(True)


def key_middleware_asgi() -> Case:
    return _middleware(True, offered=False)


def open_middleware() -> Case:
    return _middleware(False)


def _book() -> Any:
    from rhetor.governance.budget import Budget
    from rhetor.governance.budgets import BudgetBook

    book = BudgetBook()
    book.put(Budget.model_validate({"id": "env", "scope": "global", "daily_usd": 1e9, "policy": "warn"}), "env")
    return book


def book_record() -> Case:
    from rhetor.governance.ledger import UsageRecord

    book = _book()
    rec = UsageRecord(time.time(), "rid", "key_bench", None, "default", "openai", "openai", "gpt-5.4-mini")
    rec.input_tokens, rec.output_tokens, rec.cost_usd = 10, 20, 1e-5
    return lambda: book.record(rec)


def book_judge() -> Case:
    book = _book()

    def one() -> None:
        book.judge(book.applicable(None, "key_bench", "default", None), 0.0, 0)
    return one


CASES: dict[str, Callable[[], Case]] = {f.__name__: f for f in (
    empty, meter, meter_begin, meter_base, price_cost, limiter, take, take_lines, key_middleware,
    key_middleware_asgi, open_middleware, book_record, book_judge)}


def child(name: str, n: int) -> None:
    one = CASES[name]()
    for _ in range(200):
        one()
    for _ in range(n):
        one()


def count(name: str, n: int) -> int:
    out = Path(tempfile.mkdtemp(prefix="rhetor-gmicro-")) / "cg"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                    "--child", name, "--n", str(n)], capture_output=True, check=True,
                   env={**os.environ, "PYTHONHASHSEED": "0"})
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            total = max(total, int(line.split()[1]))
    out.unlink()
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cases", nargs="*", metavar="case", help=f"of: {', '.join(CASES)} (default: all)")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--child", metavar="CASE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.n)
        return
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s): {', '.join(unknown)}")
    for name in args.cases or CASES:
        per = (count(name, 3 * args.n) - count(name, args.n)) / (2 * args.n)
        print(f"{name:16} {per / 1e3:7.2f} k instructions/call", flush=True)


if __name__ == "__main__":
    main()
