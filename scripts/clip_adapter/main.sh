#!/usr/bin/env bash
# Train CLIP-Adapter on one dataset and shot count, one run per seed, with the official config
# (chosen by its declaration in trainers/). Same as: bash scripts/main.sh clip_adapter DATASET SHOTS
#   DATA=/path/to/datasets bash scripts/clip_adapter/main.sh DATASET SHOTS [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SCRIPT_USAGE="bash scripts/clip_adapter/main.sh DATASET SHOTS [KEY VALUE ...]" experiment main clip_adapter "$@"
