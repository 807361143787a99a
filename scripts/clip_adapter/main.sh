#!/usr/bin/env bash
# Train CLIP-Adapter on one dataset and shot count, one run per seed. No official configs
# were released; CoOp's schedule is used (see fewshot_grid/plan.py).
#   DATA=/path/to/datasets bash scripts/clip_adapter/main.sh DATASET SHOTS [KEY VALUE ...]
# Settings: see scripts/lib.sh.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ $# -ge 2 ] || usage "bash scripts/clip_adapter/main.sh DATASET SHOTS [KEY VALUE ...]"
dataset=$1 shots=$2
shift 2
run_planned runs clip_adapter "$dataset" "$shots" "${PLAN_OPTS[@]}" -- "$@"
