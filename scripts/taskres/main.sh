#!/usr/bin/env bash
# Train TaskRes on one dataset and shot count, one run per seed, with the official config,
# learning rate, epochs and alpha (see fewshot_grid/plan.py).
#   DATA=/path/to/datasets bash scripts/taskres/main.sh DATASET SHOTS [KEY VALUE ...]
# ENHANCED_BASE=<weights file | strong_base/ folder | none> trains on the enhanced base
# (outputs in the variant folder enhanced_base/). Other settings: see scripts/lib.sh.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ $# -ge 2 ] || usage "bash scripts/taskres/main.sh DATASET SHOTS [KEY VALUE ...]"
dataset=$1 shots=$2
shift 2
run_planned runs taskres "$dataset" "$shots" "${PLAN_OPTS[@]}" \
    --enhanced-base "${ENHANCED_BASE:-}" -- "$@"
