"""The compiled accelerators (rhetor/native.py): used only when built from the current sources, plain Python
otherwise; the compiled limiter and spend counters answer exactly as their sources do."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rhetor import native

ROOT = Path(__file__).resolve().parent.parent
WHERE = f"import importlib; print(*(importlib.import_module(m).__file__ for m in {native.MODULES!r}))"


def _files(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", WHERE], env={**os.environ, **env}, cwd=ROOT, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


def test_plain_sources_when_switched_off() -> None:
    assert _files({"RHETOR_NATIVE": "0"}) == [str(native.source_of(m)) for m in native.MODULES]


def test_compiled_modules_load_when_fresh() -> None:
    fresh, why = native.check()
    if not fresh:
        if os.environ.get("CI"):  # CI's ./setup.sh builds them: a build that broke must not pass unnoticed
            pytest.fail(f"the compiled modules are not in use in CI: {why}")
        pytest.skip(f"not built here: {why}")
    files = _files({"RHETOR_NATIVE": "1"})
    assert all(f.startswith(str(native.BUILD)) and f.endswith(".so") for f in files), files


def test_a_changed_source_is_never_shadowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "manifest.json"
    sources = {m: native.digest(native.source_of(m)) for m in native.MODULES}
    monkeypatch.setattr(native, "MANIFEST", manifest)
    manifest.write_text(json.dumps({"cache_tag": sys.implementation.cache_tag, "sources": sources}))
    assert native.check() == (True, "built by mypyc, sources unchanged")
    stale = {**sources, native.MODULES[0]: "0" * 64}
    manifest.write_text(json.dumps({"cache_tag": sys.implementation.cache_tag, "sources": stale}))
    fresh, why = native.check()
    assert not fresh and native.MODULES[0] in why
    manifest.write_text(json.dumps({"cache_tag": "cpython-399", "sources": sources}))
    assert native.check()[0] is False
    manifest.write_text(json.dumps({"cache_tag": sys.implementation.cache_tag, "sources": {}}))
    assert native.check()[0] is False
    manifest.unlink()
    assert native.check()[0] is False


def _plain(module: str) -> ModuleType:
    """`module` loaded from its source under another name, whatever rhetor.native chose for the real one."""
    spec = importlib.util.spec_from_file_location(module + "_plain", native.source_of(module))
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded  # (dataclasses look their module up while the class is made)
    try:
        spec.loader.exec_module(loaded)
    finally:
        del sys.modules[spec.name]
    return loaded


def test_the_limiter_answers_as_its_source() -> None:
    from rhetor.governance import limits

    plain = _plain("rhetor.governance.limits")
    clock = [1000.25]
    pair = [limits.InProcessLimiter(lambda: clock[0]), plain.InProcessLimiter(lambda: clock[0])]
    seen: list[list[object]] = [[], []]
    for step in range(400):
        clock[0] += (step % 7) * 0.37
        for i, lim in enumerate(pair):
            tokens = 10 + step % 13
            got = lim.take("k", 50, 2000, tokens)
            v = lim.check("c", 30, None, 0)
            seen[i].append((got, v.allowed, v.headers, v.exceeded, round(v.retry_after, 9)))
            if got is not None:
                lim.release("k", tokens)
                lim.consume("k", tokens * 2)
    assert seen[0] == seen[1]
    assert any(entry[0] is None for entry in seen[0]) and any(entry[0] is not None for entry in seen[0])


def test_the_spend_counters_answer_as_their_source() -> None:
    from rhetor.governance import spend

    plain = _plain("rhetor.governance.spend")
    got = []
    for counters in (spend.MemorySpend(), plain.MemorySpend()):
        t = 1_700_000_000.0
        for subject in (("global", ""), ("component", "ergon"), ("key", "k1")):
            counters.slots(subject)
        added = []
        for i in range(200):
            t += 3600 * (i % 5)
            added.append(counters.add(("ergon", "k1" if i % 2 else "k2", None), t, 0.001 * i, i))
        windows = [(w.start, w.end, round(w.usd, 9), w.tokens) for s in (("global", ""), ("component", "ergon"))
                   for w in counters.slots(s) if w is not None]
        got.append((added, windows))
    assert got[0] == got[1]
