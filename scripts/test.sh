#!/usr/bin/env bash
# Set up .venv (if missing) with the project and its test extra, then run the test suite.
# Usage: bash scripts/test.sh [--fast] [pytest args...]
#   --fast: skip the tests marked slow (end-to-end golden and resume runs): -m "not slow".
# Test files run in parallel, one worker per core (pytest-xdist; `-n 0` runs them in one process);
# tests/conftest.py says which files run whole on one worker and which are spread.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
if [[ "${1:-}" == "--fast" ]]; then
  shift
  set -- -m "not slow" "$@"
fi
exec python -m pytest -n auto "$@"
