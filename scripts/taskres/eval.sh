#!/usr/bin/env bash
# Evaluate the trained TaskRes models of DATASET/SHOTS (scripts/taskres/main.sh) on the test
# set of each dataset in TARGETS (default: DATASET), into OUTPUT/eval/<target>/...
#   DATA=/path/to/datasets bash scripts/taskres/eval.sh DATASET SHOTS [KEY VALUE ...]
# Pass the same ENHANCED_BASE, CFG and KEY VALUE overrides as for training.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ $# -ge 2 ] || usage "bash scripts/taskres/eval.sh DATASET SHOTS [KEY VALUE ...]"
dataset=$1 shots=$2
shift 2
# shellcheck disable=SC2086
run_planned eval taskres "$dataset" "$shots" --tree eval --targets ${TARGETS:-$dataset} \
    "${PLAN_OPTS[@]}" --enhanced-base "${ENHANCED_BASE:-}" -- "$@"
