#!/usr/bin/env bash
# The whole base-to-new protocol: every method given on every dataset of DATASETS (default the
# 11 benchmarks), seeds SEEDS, through the sweep launcher (LAUNCHER local (default) or slurm,
# its options in SWEEP_OPTS). The same command again resumes: it submits only what is missing
# (on SLURM: the new-class tests once their base-class runs finished).
#   DATA=/path/to/datasets bash scripts/base2new_sweep.sh METHOD [METHOD ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/base2new_sweep.sh METHOD [METHOD ...]" experiment base2new-sweep "$@"
