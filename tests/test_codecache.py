"""rhetor.codecache: dataclasses' generated methods from a saved code cache behave exactly as freshly compiled ones,
and a missing, corrupt or foreign cache changes nothing."""

from __future__ import annotations

import json
import marshal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rhetor import codecache

pytestmark = pytest.mark.skipif(not codecache.supported(), reason="the code cache is for CPython 3.11")

PROBE = textwrap.dedent("""
    import dataclasses, json, sys
    from rhetor import codecache
    loaded = codecache.install(__import__("pathlib").Path(sys.argv[1])) if sys.argv[1] != "-" else 0
    compiled = []
    if dataclasses._create_fn.__module__ == "rhetor.codecache":
        real_compile = __builtins__.compile
        def counting(*a, **k):
            compiled.append(1)
            return real_compile(*a, **k)
        dataclasses._create_fn.__globals__["compile"] = counting
    from rhetor.types import Message, ToolCall, Usage
    a, b = ToolCall(id="1", name="f", arguments="{}"), ToolCall(id="1", name="f", arguments="{}")
    try:
        a.id = "2"
        frozen = "assignable"
    except dataclasses.FrozenInstanceError as exc:
        frozen = type(exc).__name__
    held = len(codecache._loaded)
    codecache.release()
    print(json.dumps({"loaded": loaded, "held": held, "released": len(codecache._loaded),
                      "compiled": len(compiled), "repr": repr(a), "eq": a == b,
                      "hash": hash(a) == hash(b), "frozen": frozen, "message": repr(Message(role="user", content="hi")),
                      "usage": repr(Usage()), "patched": dataclasses._create_fn.__module__}))
""")


def probe(cache: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, cache], capture_output=True, text=True, timeout=60, check=True)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def build(path: Path) -> int:
    code = f"from pathlib import Path; from rhetor import codecache; print(codecache.build(Path({str(path)!r}), " \
           "('rhetor.types',)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return int(out.stdout)


def test_cached_methods_behave_as_compiled_ones_and_compile_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.marshal"
    assert build(path) > 10  # rhetor.types' dataclasses: __init__, __repr__, __eq__, ... each
    plain, cached = probe("-"), probe(str(path))
    assert plain["patched"] == "dataclasses" and cached["patched"] == "rhetor.codecache"
    assert cached["loaded"] == cached["held"] == build(path) and cached["compiled"] == 0
    assert cached["released"] == 0  # rhetor.heap.settle drops them once serving
    for key in ("repr", "eq", "hash", "frozen", "message", "usage"):
        assert cached[key] == plain[key], key


def test_missing_corrupt_or_foreign_caches_change_nothing(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.marshal"
    corrupt.write_bytes(b"not marshal data")
    foreign = tmp_path / "foreign.marshal"
    foreign.write_bytes(marshal.dumps(("another Python", {})))
    for path in (tmp_path / "missing.marshal", corrupt, foreign):
        result = probe(str(path))
        assert result["loaded"] == 0 and result["patched"] == "dataclasses"
