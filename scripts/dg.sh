#!/usr/bin/env bash
# Domain generalisation: train METHOD on ImageNet (SHOTS default 16; finished runs are reused),
# then test each seed on ImageNet-V2, -Sketch, -A and -R into OUTPUT/dg/<target>/...
# Table: python parse_results.py OUTPUT --dg
#   DATA=/path/to/datasets bash scripts/dg.sh METHOD [SHOTS] [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/dg.sh METHOD [SHOTS] [KEY VALUE ...]" experiment dg "$@"
