#!/usr/bin/env bash
# Install avvp with its test tools into .venv (skipped when nothing changed: scripts/setup.sh), then lint and run
# the test suite (measured time: README, "Set up and run").
#   bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${AVVP_VENV:-.venv}"
"$venv/bin/ruff" check .
# Two workers (one per core of the project's machines), a test file per worker at a time: module fixtures are
# built once. The files go out in the order tests/conftest.py gives (longest first), not xdist's (most tests
# first). AVVP_TEST_WORKERS=0 runs everything in this process.
"$venv/bin/python" -m pytest -n "${AVVP_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder "$@"
