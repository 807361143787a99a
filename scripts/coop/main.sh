#!/usr/bin/env bash
# Train CoOp with its declared config, one run per seed (= scripts/main.sh coop).
#   DATA=/path/to/datasets bash scripts/coop/main.sh DATASET SHOTS [KEY VALUE ...]
# NCTX (default 16), CSC (False) and CTP (end) name the variant folder nctx<NCTX>_csc<CSC>_ctp<CTP>.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/coop/main.sh DATASET SHOTS [KEY VALUE ...]" experiment main coop "$@"
