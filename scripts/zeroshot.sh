#!/usr/bin/env bash
# Zero-shot CLIP on one dataset's test set (nothing trains; one seedless run), into
# OUTPUT/<dataset>/<Trainer>/<cfg>_0shots/.
#   DATA=/path/to/datasets bash scripts/zeroshot.sh DATASET [KEY VALUE ...]
# TRAINER=ZeroshotCLIP2 uses the prompt ensemble; CFG picks the backbone config (default rn50).
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/zeroshot.sh DATASET [KEY VALUE ...]" experiment main zeroshot "$@"
