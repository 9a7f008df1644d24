#!/usr/bin/env bash
# Install avvp with its test tools into .venv (skipped when nothing changed: scripts/setup.sh), then lint and run
# the test suite (measured time: README, "Set up and run").
#   bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${AVVP_VENV:-.venv}"
"$venv/bin/ruff" check .
"$venv/bin/python" -m pytest "$@"
