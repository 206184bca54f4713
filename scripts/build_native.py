"""Build Rhetor's compiled accelerators (rhetor.native.MODULES) with mypyc into .native/, then write its manifest.

Run by ./setup.sh with the serving venv's Python and mypyc from a throwaway venv on PYTHONPATH (requirements-build.lock:
mypy and setuptools, hash-pinned), so the serving install carries no compiler tooling:

    PYTHONPATH=<build venv site-packages> .venv/bin/python scripts/build_native.py

Writes nothing under rhetor/ (the sources stay the only copy there): the C, objects and libraries go to a
temporary folder, the libraries are copied to .native/ and the manifest is written last, so a build that fails
half-way leaves no manifest and Rhetor runs the plain sources.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhetor import native  # noqa: E402  (stdlib only: imports nothing of the app)


def main() -> None:
    from mypyc.build import mypycify
    from setuptools import setup  # type: ignore[import-untyped]

    sources = {m: native.digest(native.source_of(m)) for m in native.MODULES}
    paths = [str(native.source_of(m).relative_to(ROOT)) for m in native.MODULES]
    shutil.rmtree(native.BUILD, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="rhetor-native-") as tmp:
        out = Path(tmp) / "lib"
        modules = mypycify(paths, opt_level="3", group_name=native.GROUP, target_dir=str(Path(tmp) / "c"))
        setup(name="rhetor-native", ext_modules=modules,
              script_args=["-q", "build_ext", "--build-lib", str(out), "--build-temp", str(Path(tmp) / "obj")])
        native.BUILD.mkdir(parents=True)
        for lib in out.rglob("*.so"):
            dest = native.BUILD / lib.relative_to(out)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(lib, dest)
    native.MANIFEST.write_text(json.dumps({"cache_tag": sys.implementation.cache_tag, "sources": sources},
                                          indent=1) + "\n", "utf-8")
    print(f"native: {len(sources)} modules compiled into {native.BUILD.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
