#!/usr/bin/env bash
# Train CoOp on one dataset and shot count, one run per seed, with the official config and
# epochs (see fewshot_grid/plan.py).
#   DATA=/path/to/datasets bash scripts/coop/main.sh DATASET SHOTS [KEY VALUE ...]
# NCTX (default 16), CSC (False) and CTP (end) set the context; they name the variant folder
# nctx<NCTX>_csc<CSC>_ctp<CTP>. Other settings: see scripts/lib.sh.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ $# -ge 2 ] || usage "bash scripts/coop/main.sh DATASET SHOTS [KEY VALUE ...]"
dataset=$1 shots=$2
shift 2
run_planned runs coop "$dataset" "$shots" "${PLAN_OPTS[@]}" \
    --nctx "${NCTX:-16}" --csc "${CSC:-False}" --ctp "${CTP:-end}" -- "$@"
