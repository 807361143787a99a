#!/usr/bin/env bash
# Train TaskRes on ImageNet (SHOTS default 16; finished runs are reused), then test each seed
# on ImageNet-V2, -Sketch, -A and -R into OUTPUT/dg/<target>/... Table: parse_results.py OUTPUT --dg
#   DATA=/path/to/datasets bash scripts/taskres/dg.sh [SHOTS] [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
experiment dg taskres "$@"
