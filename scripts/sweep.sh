#!/usr/bin/env bash
# Every dataset x shot count of one method (the 11 benchmarks x 1 2 4 8 16 shots; zeroshot: the
# 11 datasets), one run after the other; finished runs are skipped, failures listed at the end.
#   DATA=/path/to/datasets bash scripts/sweep.sh METHOD [KEY VALUE ...]
# DATASETS="dtd eurosat" and SHOTS="1 16" narrow the grid; LAUNCHER=local|slurm runs it in
# parallel through python -m sweep, with its own options in SWEEP_OPTS (e.g. "--dry-run").
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/sweep.sh METHOD [KEY VALUE ...]" experiment sweep "$@"
