#!/usr/bin/env bash
# Test the trained TaskRes models of DATASET/SHOTS (scripts/taskres/main.sh) on each dataset in
# TARGETS (default: DATASET), into OUTPUT/eval/<target>/... Pass the same settings and
# KEY VALUE overrides as for training.
#   DATA=/path/to/datasets bash scripts/taskres/eval.sh DATASET SHOTS [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/taskres/eval.sh DATASET SHOTS [KEY VALUE ...]" experiment eval taskres "$@"
