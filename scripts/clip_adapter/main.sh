#!/usr/bin/env bash
# Train CLIP-Adapter with its declared config, one run per seed (= main.sh clip_adapter).
#   DATA=/path/to/datasets bash scripts/clip_adapter/main.sh DATASET SHOTS [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/clip_adapter/main.sh DATASET SHOTS [KEY VALUE ...]" experiment main clip_adapter "$@"
