#!/usr/bin/env bash
# Base-to-new of promptsrc on one dataset (= scripts/base2new.sh promptsrc): seeds 1-3, 16 shots of the base
# classes, then each model tested on the new classes. Table: parse_results.py OUTPUT/base2new --base2new
#   DATA=/path/to/datasets bash scripts/promptsrc/base2new.sh DATASET [SHOTS] [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/promptsrc/base2new.sh DATASET [SHOTS] [KEY VALUE ...]" experiment base2new promptsrc "$@"
