#!/usr/bin/env bash
# Zero-shot CLIP on one dataset (one seedless run); TRAINER=ZeroshotCLIP2: the prompt ensemble.
#   DATA=/path/to/datasets bash scripts/zeroshot.sh DATASET [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/zeroshot.sh DATASET [KEY VALUE ...]" experiment main zeroshot "$@"
