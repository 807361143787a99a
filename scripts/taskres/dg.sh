#!/usr/bin/env bash
# Domain generalisation: train TaskRes on ImageNet with SHOTS shots (default 16; finished
# runs are reused), then test each seed's model on ImageNet-V2, -Sketch, -A and -R, into
# OUTPUT/dg/<target>/TaskRes/<cfg>_<K>shots/seed<S>. Table: python parse_results.py OUTPUT --dg
#   DATA=/path/to/datasets bash scripts/taskres/dg.sh [SHOTS] [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
experiment dg taskres "$@"
