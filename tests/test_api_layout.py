"""The web layer's layout: one subpackage per front (native, legacy, openai, anthropic) plus the vendor fronts'
shared layer (compat), with one-way imports between them and no import cycle anywhere under rhetor/api.

Read from the source (ast), so a cycle is caught whatever order modules happen to load in; and each front
subpackage is imported alone in a fresh interpreter, so one that only works after another front loaded fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "rhetor" / "api"
FRONTS = ("native", "legacy", "openai", "anthropic", "compat")
# front -> the fronts it may import: the adapter shim is built on the native bodies; the vendor fronts share
# compat; GET /v1/models answers the Anthropic SDK in Anthropic's error shape too.
ALLOWED = {"native": set(), "legacy": {"native"}, "compat": set(), "openai": {"compat", "anthropic"},
           "anthropic": {"compat"}}
# top-level modules that compose the fronts (everything else at the top level is shared and imports none)
COMPOSERS = {"rhetor.api.app", "rhetor.api.unknown_routes"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in API.rglob("*.py"):
        parts = path.relative_to(API.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The rhetor.api modules `name` imports at module level (function-local imports are lazy by design)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.Module(body=_module_level(ast.parse(path.read_text("utf-8")).body), type_ignores=[])):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(head + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in out if m in known and m != name}


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    kept: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(stmt, ast.ClassDef):
            kept.extend(_module_level(stmt.body))
        elif isinstance(stmt, (ast.If, ast.Try)):
            kept.append(stmt)  # TYPE_CHECKING imports count: a type-only cycle is still a tangle
        else:
            kept.append(stmt)
    return kept


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _front(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[2] in FRONTS else None


def test_each_front_is_a_subpackage() -> None:
    for front in FRONTS:
        assert (API / front / "__init__.py").is_file(), front
    flat = sorted(p.name for p in API.glob("*.py"))
    leftovers = [n for n in flat if n.startswith("compat_") or n.endswith("_compat.py")
                 or n in ("native.py", "legacy.py", "legacy_ws.py", "ws.py", "schemas.py", "shapes.py")]
    assert leftovers == [], f"front modules left at the top of rhetor/api: {leftovers}"


def test_no_import_cycle_under_rhetor_api() -> None:
    graph = _graph()
    assert "rhetor.api.native.ws" in graph and "rhetor.api.legacy.envelope" in graph
    assert "rhetor.api.legacy.envelope" not in graph["rhetor.api.native.ws"]  # the socket is given its side protocol
    assert _cycles(graph) == []


def test_fronts_import_each_other_one_way_only() -> None:
    graph = _graph()
    seen: dict[str, set[str]] = {f: set() for f in FRONTS}
    for module, deps in graph.items():
        src = _front(module)
        for dep in deps:
            dst = _front(dep)
            if src is None and dst is not None and not module.startswith("rhetor.api.openapi"):
                assert module in COMPOSERS, f"shared module {module} imports the {dst} front ({dep})"
            if src is not None and dst is not None and dst != src:
                seen[src].add(dst)
    for front, deps in seen.items():
        assert deps <= ALLOWED[front], f"{front} imports {sorted(deps - ALLOWED[front])}"
    assert _cycles({f: set(d) for f, d in seen.items()}) == []


def test_package_inits_import_nothing() -> None:
    """A front's __init__ stays empty, so importing one of its modules never drags the whole front in."""
    for front in FRONTS:
        tree = ast.parse((API / front / "__init__.py").read_text("utf-8"))
        assert not [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))], front


@pytest.mark.parametrize("front", FRONTS)
def test_each_front_imports_alone_in_a_fresh_interpreter(front: str) -> None:
    names = sorted(m for m in _modules() if _front(m) == front)
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted({m.split('.')[2] for m in sys.modules if m.startswith('rhetor.api.') and len(m.split('.')) > 2"
        f" and m.split('.')[2] in {FRONTS!r}}})\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=API.parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = set(done.stdout.strip().split(",")) - {front}
    assert loaded <= _reachable(front), f"importing {front} loaded {sorted(loaded)}"


def _reachable(front: str) -> set[str]:
    out: set[str] = set()
    todo = [front]
    while todo:
        for dep in ALLOWED[todo.pop()]:
            if dep not in out:
                out.add(dep)
                todo.append(dep)
    return out
