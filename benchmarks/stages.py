"""Where a request's work goes, by stage: a cProfile dump of `instructions.py --profile` (RHETOR_PROFILE_DUMP)
split into the stages issue 13 names (parsing, validation, routing, context, translation, serialization,
middleware, upstream client) plus metrics, governance, the gateway's own glue and the benchmark's driver.

Each function's own time goes to the stage of its module (or, for the few named here, of the function); a C
function's (dict.get, orjson.loads, ...) goes to its callers' stages, split as cProfile split it. The shares are
of profiled time, which weighs Python calls more than callgrind does: read them as proportions, and the
`--total` column (the share of a callgrind count, e.g. instructions.py's in-process figure) as an estimate.

    RHETOR_PROFILE_DUMP=/tmp/oa.pstats PYTHONHASHSEED=0 .venv/bin/python benchmarks/instructions.py oa --profile
    .venv/bin/python benchmarks/stages.py /tmp/oa.pstats --total 577

Knows Rhetor's module layout; nothing of how the figures were made.
"""

from __future__ import annotations

import argparse
import pstats
from collections import Counter

# (path fragment, function name or "" for any) -> stage; the first match wins
RULES: list[tuple[str, str, str]] = [
    ("benchmarks/", "", "(benchmark driver)"),
    ("rhetor/api/fastlane.py", "body", "parsing"),
    ("rhetor/api/responses.py", "parse_json", "parsing"),
    ("rhetor/api/openai/chat.py", "quick_messages", "validation"),
    ("rhetor/api/anthropic/", "quick", "validation"),
    ("rhetor/api/native/", "quick", "validation"),
    ("pydantic", "", "validation"),
    ("rhetor/routing/", "", "routing"),
    ("rhetor/api/compat/common.py", "resolve", "routing"),
    ("rhetor/gateway.py", "_route", "routing"),
    ("rhetor/providers/__init__.py", "", "routing"),
    ("rhetor/catalog/", "", "routing"),
    ("rhetor/context/", "", "context"),
    ("rhetor/gateway.py", "_prepare", "context"),
    ("rhetor/gateway.py", "_window", "context"),
    ("rhetor/api/compat/common.py", "header", "translation"),
    ("rhetor/api/compat/", "", "translation"),
    ("rhetor/api/attribution.py", "", "translation"),
    ("rhetor/gateway.py", "build", "translation"),
    ("rhetor/routing/options.py", "", "translation"),
    ("rhetor/providers/aio", "", "upstream client"),
    ("rhetor/providers/http.py", "", "upstream client"),
    ("rhetor/providers/", "", "translation"),
    ("rhetor/api/responses.py", "", "serialization"),
    ("rhetor/api/coalesce.py", "", "serialization"),
    ("starlette/responses.py", "", "serialization"),
    ("rhetor/api/openai/", "", "translation"),
    ("rhetor/api/anthropic/", "", "translation"),
    ("rhetor/api/native/", "", "translation"),
    ("rhetor/observability/", "", "metrics"),
    ("rhetor/metrics.py", "", "metrics"),
    ("rhetor/governance/", "", "governance"),
    ("rhetor/api/auth.py", "", "governance"),
    ("rhetor/api/presented.py", "", "governance"),
    ("rhetor/api/middleware.py", "", "middleware"),
    ("rhetor/api/fastlane.py", "", "middleware"),
    ("rhetor/timing.py", "", "middleware"),
    ("starlette", "", "middleware"),
    ("fastapi", "", "middleware"),
    ("aiohttp", "", "upstream client"),
    ("yarl", "", "upstream client"),
    ("multidict", "", "upstream client"),
    ("rhetor/gateway.py", "", "gateway"),
    ("rhetor/", "", "other Rhetor"),
]
ORDER = ["parsing", "validation", "routing", "context", "translation", "serialization", "middleware",
         "upstream client", "metrics", "governance", "gateway", "other Rhetor", "other", "(benchmark driver)"]


def stage_of(path: str, name: str) -> str | None:
    if path == "~":
        return None  # a C function: its callers'
    for fragment, func, stage in RULES:
        if fragment in path and (not func or name == func or (func == "quick" and "quick" in name)):
            return stage
    return "other"


def stages(dump: str) -> Counter[str]:
    stats = pstats.Stats(dump).stats  # type: ignore[attr-defined]
    out: Counter[str] = Counter()
    for (path, _line, name), (_cc, _nc, tt, _ct, callers) in stats.items():
        stage = stage_of(path, name)
        if stage is not None:
            out[stage] += tt
            continue
        split = {caller: c[2] for caller, c in callers.items()} or {("~", 0, "?"): tt}
        for (cpath, _cl, cname), share in split.items():
            out[stage_of(cpath, cname) or "other"] += share
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dumps", nargs="+", help="pstats files (RHETOR_PROFILE_DUMP); several: side by side")
    ap.add_argument("--total", type=float, nargs="*", default=[], help="k instructions/request of each dump")
    args = ap.parse_args()
    counted = [stages(d) for d in args.dumps]
    print(f"{'stage':20}" + "".join(f" | {'share':>6} {'k est.':>7}" for _ in counted))
    for stage in ORDER:
        row = f"{stage:20}"
        for i, c in enumerate(counted):
            total = sum(v for k, v in c.items() if k != "(benchmark driver)")
            share = c.get(stage, 0.0) / total if stage != "(benchmark driver)" else 0.0
            est = f"{share * args.total[i]:7.0f}" if i < len(args.total) and stage != "(benchmark driver)" else ""
            row += f" | {share * 100:5.1f}% {est:>7}"
        print(row)


if __name__ == "__main__":
    main()
