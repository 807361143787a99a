#!/usr/bin/env bash
# The demo, first command on a fresh machine: sets up .venv if needed, runs scripts/demo.py.
#   bash scripts/demo.sh [--quick] [--random-weights] [--output DIR] [--jobs N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec python scripts/demo.py "$@"
