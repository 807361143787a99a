#!/usr/bin/env bash
# Cross-dataset transfer: train METHOD on ImageNet, all classes (SHOTS default 16; finished runs
# are reused), then test each seed on the other 10 benchmarks into OUTPUT/xd/<target>/...
# Table: python parse_results.py OUTPUT --xd
#   DATA=/path/to/datasets bash scripts/xd.sh METHOD [SHOTS] [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/xd.sh METHOD [SHOTS] [KEY VALUE ...]" experiment xd "$@"
