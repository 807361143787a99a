#!/usr/bin/env bash
# Every dataset x shot count of one method, one run after the other (DATASETS, SHOTS narrow
# it); LAUNCHER=local|slurm hands it to python -m experiments, with its options in SWEEP_OPTS.
#   DATA=/path/to/datasets bash scripts/sweep.sh METHOD [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/sweep.sh METHOD [KEY VALUE ...]" experiment sweep "$@"
