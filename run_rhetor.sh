#!/usr/bin/env bash
# Serve Rhetor in the foreground (sets up .venv first if it is missing). Extra arguments go to `python -m rhetor`.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || ./setup.sh
exec .venv/bin/python -m rhetor "$@"
