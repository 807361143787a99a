#!/usr/bin/env bash
# Any declared method on one dataset and shot count, one run per seed (zeroshot: no SHOTS).
#   DATA=/path/to/datasets bash scripts/main.sh METHOD DATASET SHOTS [KEY VALUE ...]
# Settings: scripts/lib.sh; a method's own options (e.g. NCTX for coop) are environment variables.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/main.sh METHOD DATASET SHOTS [KEY VALUE ...]" experiment main "$@"
