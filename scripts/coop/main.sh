#!/usr/bin/env bash
# Train CoOp on one dataset and shot count, one run per seed, with the official config
# (chosen by its declaration in trainers/). Same as: bash scripts/main.sh coop DATASET SHOTS
#   DATA=/path/to/datasets bash scripts/coop/main.sh DATASET SHOTS [KEY VALUE ...]
# NCTX (default 16), CSC (False) and CTP (end) set the context; they name the variant folder
# nctx<NCTX>_csc<CSC>_ctp<CTP>.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/coop/main.sh DATASET SHOTS [KEY VALUE ...]" experiment main coop "$@"
