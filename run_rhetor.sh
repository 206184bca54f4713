#!/usr/bin/env bash
# Serve Rhetor in the foreground (sets up or updates .venv first: a no-op when it is current). Extra arguments go to
# `python -m rhetor`.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
exec .venv/bin/python -m rhetor "$@"
