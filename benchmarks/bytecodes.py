"""Bytecodes per request, per Python function: a deterministic profile (`instructions.py --bytecodes`).

Callgrind counts instructions but cannot say which Python function spent them (they are all the eval loop's);
cProfile names the functions but its times move with the machine and its own overhead. This counts the
bytecodes each function executes (sys.settrace with opcode events, on the thread that serves requests) over
the measured requests: the same figure every run, so a change's effect on each function can be read alone.
Compiled code (C extensions, rhetor.native's mypyc modules) executes no bytecodes and shows as the Python
function that called it. Worker threads (the SQLite ledger's) are not traced. RHETOR_BYTECODES_LINES=auth.py,gate.py
also prints those files' bytecodes a request line by line.

    .venv/bin/python benchmarks/instructions.py oa --bytecodes [--top 40]
    .venv/bin/python benchmarks/instructions.py oa native --bytecodes --governance on off   # on - off per function
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

Counts = dict[str, float]  # "file:line(function)" -> bytecodes a request


def where(code: CodeType) -> str:
    path = Path(code.co_filename)
    short = "/".join(path.parts[-2:]) if "site-packages" not in path.parts else path.name
    return f"{short}:{code.co_firstlineno}({code.co_name})"


async def traced(one: Callable[[], Awaitable[None]], n: int) -> Counts:
    """Run `one` n times with every bytecode counted; bytecodes a request per function."""
    counts: Counter[CodeType] = Counter()
    lines: Counter[tuple[str, int]] = Counter()
    by_line = [x for x in os.environ.get("RHETOR_BYTECODES_LINES", "").split(",") if x]

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            counts[frame.f_code] += 1
            if by_line:
                lines[(frame.f_code.co_filename, frame.f_lineno or 0)] += 1
        return local

    def call(frame: FrameType, event: str, arg: Any) -> Any:  # every new frame, and every resumed coroutine
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    sys.settrace(call)
    try:
        for _ in range(n):
            await one()
    finally:
        sys.settrace(None)
    for (file, line), c in sorted(lines.items()):  # RHETOR_BYTECODES_LINES=auth.py,gate.py: those files by line
        if any(part in file for part in by_line):
            print(f"{c / n:8.1f}  {Path(file).name}:{line}", flush=True)
    out: Counts = {}
    for code, c in counts.items():
        out[where(code)] = out.get(where(code), 0.0) + c / n
    return out


def dump(counts: Counts, path: str) -> None:
    Path(path).write_text(json.dumps(counts), "utf-8")


def load(path: str) -> Counts:
    found: Counts = json.loads(Path(path).read_text("utf-8"))
    Path(path).unlink()
    return found


def show(label: str, counts: Counts, top: int) -> None:
    print(f"{label}: {sum(counts.values()):.0f} bytecodes a request; the top {top} functions:")
    for name, c in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {c:8.1f}  {name}")


def difference(label: str, on: Counts, off: Counts, top: int) -> None:
    """Per function, `on` minus `off`, the largest changes first (either way)."""
    delta = {k: on.get(k, 0.0) - off.get(k, 0.0) for k in set(on) | set(off)}
    print(f"{label}: {sum(on.values()) - sum(off.values()):+.0f} bytecodes a request "
          f"({sum(on.values()):.0f} vs {sum(off.values()):.0f}); the largest differences:")
    for name, d in sorted(delta.items(), key=lambda kv: -abs(kv[1]))[:top]:
        if abs(d) >= 0.5:
            print(f"  {d:+8.1f}  {name}")
