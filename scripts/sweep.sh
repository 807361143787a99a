#!/usr/bin/env bash
# Every dataset x shot count of one method: the 11 benchmarks x 1 2 4 8 16 shots (an
# evaluation-only method such as zeroshot: the 11 datasets). Finished runs are skipped, so the
# sweep can be started again after a stop. A failing run does not stop the sweep; the failures
# are listed at the end (exit status 1).
#   DATA=/path/to/datasets bash scripts/sweep.sh METHOD [KEY VALUE ...]
# DATASETS="dtd eurosat" and SHOTS="1 16" restrict the grid; the other settings (SEEDS,
# OUTPUT, FORCE, the method's options, ...) pass through. LAUNCHER=local|slurm runs the grid in
# parallel through python -m sweep, with its own options in SWEEP_OPTS (e.g. "--dry-run" or
# "--partition gpu --array-parallelism 32").
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/sweep.sh METHOD [KEY VALUE ...]" experiment sweep "$@"
