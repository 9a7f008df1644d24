#!/usr/bin/env bash
# Install avvp with its test tools into .venv, then lint and run the test suite (under 5 minutes on 2 cores).
#   bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${AVVP_VENV:-.venv}"
"$venv/bin/ruff" check .
"$venv/bin/python" -m pytest "$@"
