"""Compiled accelerators: a few pure-arithmetic governance modules built with mypyc (mypy's compiler, as mypy and
black ship themselves) by `./setup.sh` into `.native/` at the repository's root, and used only while they match
their sources exactly.

Why: the per-request rate-limit and budget bookkeeping (rhetor.governance.limits, .spend, .budgets) is a handful
of integer and float updates that CPython's eval loop makes ~2x dearer than the work itself; compiled, the
limiter's take + release + consume falls 16.2k -> 9.3k instructions, and a governed request's cost ~10k of ~60k
(callgrind, benchmarks/README.md "Round 9, compiled accelerators").
The sources stay the truth: `scripts/build_native.py` records the SHA-256 of each compiled module's source in
`.native/manifest.json`, and `activate` puts the build in front of a package's own directory only when every
recorded source is unchanged and the build is for this interpreter; otherwise (an edited file, another Python,
no compiler at setup, `RHETOR_NATIVE=0`) the same modules load as plain Python, with the same behaviour.
`state` says which way it went (the start-up log, /health).
Knows nothing of what the modules do.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / ".native"
MANIFEST = BUILD / "manifest.json"
GROUP = "rhetor_native"  # the compiled group's shared library: BUILD / f"{GROUP}__mypyc.<abi>.so"
# The compiled modules: plain computation on their own classes, no coroutines (mypyc's are dearer to resume than
# CPython's, measured: a compiled async middleware cost every request ~7k) and no pydantic models (not compilable).
MODULES = ("rhetor.governance.limits", "rhetor.governance.spend", "rhetor.governance.budgets")

state: dict[str, object] = {"active": False, "reason": "not checked", "modules": []}


def source_of(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fresh() -> tuple[bool, str]:
    if os.environ.get("RHETOR_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
        return False, "RHETOR_NATIVE=0"
    return check()


def check() -> tuple[bool, str]:
    """(whether .native/ holds a build of MODULES from their current sources for this interpreter, why not)."""
    try:
        manifest = json.loads(MANIFEST.read_text("utf-8"))
    except (OSError, ValueError):
        return False, "not built (./setup.sh builds it when a C compiler is there)"
    if manifest.get("cache_tag") != sys.implementation.cache_tag:
        return False, f"built for {manifest.get('cache_tag')}, not {sys.implementation.cache_tag}"
    sources = manifest.get("sources") or {}
    if set(sources) != set(MODULES):
        return False, "built for another module list: ./setup.sh rebuilds it"
    for module, recorded in sources.items():
        try:
            if digest(source_of(module)) != recorded:
                return False, f"{module} changed since the build: ./setup.sh rebuilds it"
        except OSError:
            return False, f"{module}: source missing"
    return True, "built by mypyc, sources unchanged"


def activate(package: str, path: list[str]) -> None:
    """Called by a package's __init__ (before any of its modules is imported): when the build is fresh, search
    the build's copy of the package first, so its compiled modules load instead of the sources."""
    if state["reason"] == "not checked":
        active, reason = _fresh()
        state.update(active=active, reason=reason, modules=list(MODULES) if active else [])
        if active and str(BUILD) not in sys.path:
            sys.path.append(str(BUILD))  # the group library (a top-level module of its own name)
    if state["active"]:
        built = BUILD.joinpath(*package.split("."))
        if built.is_dir() and str(built) not in path:
            path.insert(0, str(built))


__all__ = ["BUILD", "GROUP", "MANIFEST", "MODULES", "activate", "check", "digest", "source_of", "state"]
