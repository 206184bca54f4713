"""Dataclasses' generated methods, compiled once at install time instead of at every start.

`@dataclass` writes each class's `__init__`, `__repr__`, `__eq__`, ... as source text and compiles it (CPython
3.11: `dataclasses._create_fn`, one `exec` of a string per method). Rhetor's start-up defines ~140
dataclasses, ~550 such methods: parsing and compiling them was ~295M instructions, 16% of its imports (callgrind
of the serving imports with and without this cache, 1,799M -> 1,504M). `build()` (run by ./setup.sh, after
byte-compiling) imports what the server imports and saves the code objects compiled from each text, keyed by
the text, in `__pycache__` beside this module; `install()` (python -m rhetor) loads that file and makes
`_create_fn` execute the cached code object for a text it knows, until `release()` (rhetor.heap.settle, once
serving). A text it does not know (changed code, another library) is compiled as before, so a stale or missing
file changes nothing but the time: the code object for a text is exactly what `exec` of that text compiles. The
file is only used by the Python that wrote it.
Knows nothing of Rhetor but which modules the server imports (`SERVER_MODULES`).
"""

from __future__ import annotations

import dataclasses
import importlib
import marshal
import os
import sys
from pathlib import Path
from typing import Any

SERVER_MODULES = ("rhetor.cli", "uvicorn", "rhetor.api.admin", "rhetor.api.app", "rhetor.api.health",
                  "rhetor.api.protocols", "rhetor.observability.logs", "rhetor.workers")  # rhetor.cli._serve's
PATH = Path(__file__).parent / "__pycache__" / f"dataclass-code.{sys.implementation.cache_tag}.marshal"
_loaded: dict[str, Any] = {}  # what install() loaded, until release()
_ARGS = ("name", "args", "body", "globals", "locals", "return_type")  # _create_fn's parameters in 3.11


def supported() -> bool:
    fn = getattr(dataclasses, "_create_fn", None)
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_varnames[:len(_ARGS)] == _ARGS and sys.version_info[:2] == (3, 11)


def install(path: Path = PATH) -> int:
    """Use the saved code objects, if there are any for this Python: how many were loaded."""
    if not supported():
        return 0
    try:
        version, cache = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return 0
    if version != sys.version or not isinstance(cache, dict):
        return 0
    _loaded.update(cache)
    _patch(_loaded, None)
    return len(cache)


def release() -> None:
    """Start-up is over (its dataclasses are made): drop the loaded code objects; later texts compile as before."""
    _loaded.clear()


def build(path: Path = PATH, modules: tuple[str, ...] = SERVER_MODULES) -> int:
    """Import `modules` in this (fresh) process and save the code of every dataclass method they made."""
    if not supported():
        return 0
    seen: dict[str, Any] = {}
    _patch({}, seen)
    for name in modules:
        importlib.import_module(name)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(marshal.dumps((sys.version, seen)))
    os.replace(tmp, path)
    return len(seen)


def _patch(cache: dict[str, Any], record: dict[str, Any] | None) -> None:
    missing = dataclasses.MISSING

    def create_fn(name: str, args: list[str], body: list[str], *, globals: dict[str, Any] | None = None,
                  locals: dict[str, Any] | None = None, return_type: Any = missing) -> Any:
        # CPython 3.11's dataclasses._create_fn, but for where its code object comes from
        if locals is None:
            locals = {}
        return_annotation = ""
        if return_type is not missing:
            locals["_return_type"] = return_type
            return_annotation = "->_return_type"
        joined = ",".join(args)
        lines = "\n".join(f"  {b}" for b in body)
        txt = f" def {name}({joined}){return_annotation}:\n{lines}"
        local_vars = ", ".join(locals.keys())
        txt = f"def __create_fn__({local_vars}):\n{txt}\n return {name}"
        code = cache.get(txt)
        if code is None:
            code = compile(txt, "<string>", "exec", dont_inherit=True)  # what exec(txt) compiled there
            if record is not None:
                record[txt] = code
        ns: dict[str, Any] = {}
        exec(code, vars(dataclasses) if globals is None else globals, ns)  # exec(txt) there ran in its globals
        return ns["__create_fn__"](**locals)

    dataclasses._create_fn = create_fn  # type: ignore[attr-defined]


__all__ = ["PATH", "SERVER_MODULES", "build", "install", "release", "supported"]
