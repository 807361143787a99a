#!/usr/bin/env bash
# The demo, first command on a fresh machine: sets up .venv if needed, draws a small benchmark
# (DemoShapes, and DemoLandUse whose class names do not describe its images), runs zero-shot CLIP,
# TaskRes, CLIP-Adapter and CoOp over a few shot counts and seeds, and prints the results table and
# the plot path.
#   bash scripts/demo.sh            # full size: pretrained RN50 if available, else a tiny CLIP pretrained
#                                   # here first (no network needed); about 6 min on 2 CPU cores
#   bash scripts/demo.sh --quick    # reduced size (tiny random-weight CLIP): 1-2 minutes
# Options: --random-weights, --output DIR (default demo_output). See scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec python scripts/demo.py "$@"
