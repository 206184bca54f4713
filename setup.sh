#!/usr/bin/env bash
# Create .venv in the repo root and install Rhetor with its test extras. Idempotent and cheap to re-run:
# the install is skipped when pyproject.toml has not changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.rhetor-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test,local]'
  touch "$stamp"
fi
mkdir -p "${RHETOR_DATA_DIR:-$HOME/.tekton/data/rhetor}" "$HOME/.tekton/logs"
