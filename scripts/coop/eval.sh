#!/usr/bin/env bash
# Test the CoOp models of scripts/coop/main.sh DATASET SHOTS on each of TARGETS (default:
# DATASET), into OUTPUT/eval/<target>/...; give the same settings as for training.
#   DATA=/path/to/datasets bash scripts/coop/eval.sh DATASET SHOTS [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/coop/eval.sh DATASET SHOTS [KEY VALUE ...]" experiment eval coop "$@"
