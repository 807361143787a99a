#!/usr/bin/env bash
# Train TaskRes with its declared config, one run per seed (= scripts/main.sh taskres).
#   DATA=/path/to/datasets bash scripts/taskres/main.sh DATASET SHOTS [KEY VALUE ...]
# ENHANCED_BASE=<weights file | strong_base/ folder | none>: variant folder enhanced_base/.
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/taskres/main.sh DATASET SHOTS [KEY VALUE ...]" experiment main taskres "$@"
