#!/usr/bin/env bash
# Train TaskRes on one dataset and shot count, one run per seed, with the official config
# (chosen by its declaration in trainers/). Same as: bash scripts/main.sh taskres DATASET SHOTS
#   DATA=/path/to/datasets bash scripts/taskres/main.sh DATASET SHOTS [KEY VALUE ...]
# ENHANCED_BASE=<weights file | strong_base/ folder | none> trains on the enhanced base
# (outputs in the variant folder enhanced_base/).
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/taskres/main.sh DATASET SHOTS [KEY VALUE ...]" experiment main taskres "$@"
