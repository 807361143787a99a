#!/usr/bin/env bash
# Evaluate the trained CoOp models of DATASET/SHOTS (scripts/coop/main.sh) on the test set of
# each dataset in TARGETS (default: DATASET), into OUTPUT/eval/<target>/...
#   DATA=/path/to/datasets bash scripts/coop/eval.sh DATASET SHOTS [KEY VALUE ...]
# Pass the same NCTX, CSC, CTP, CFG and KEY VALUE overrides as for training.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ $# -ge 2 ] || usage "bash scripts/coop/eval.sh DATASET SHOTS [KEY VALUE ...]"
dataset=$1 shots=$2
shift 2
# shellcheck disable=SC2086
run_planned eval coop "$dataset" "$shots" --tree eval --targets ${TARGETS:-$dataset} \
    "${PLAN_OPTS[@]}" --nctx "${NCTX:-16}" --csc "${CSC:-False}" --ctp "${CTP:-end}" -- "$@"
