#!/usr/bin/env bash
# Any declared method (taskres, coop, clip_adapter, zeroshot, or one from PLUGINS) on one
# dataset and shot count, one run per seed, with the config its declaration chooses.
#   DATA=/path/to/datasets bash scripts/main.sh METHOD DATASET SHOTS [KEY VALUE ...]
# An evaluation-only method (zeroshot) takes no SHOTS. Settings: see scripts/lib.sh; the
# method's own options (e.g. NCTX, CSC, CTP for coop) are environment variables too.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/main.sh METHOD DATASET SHOTS [KEY VALUE ...]" experiment main "$@"
