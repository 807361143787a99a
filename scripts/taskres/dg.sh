#!/usr/bin/env bash
# Domain generalisation: train TaskRes on ImageNet with SHOTS shots (default 16; finished
# runs are reused), then test each seed's model on ImageNet-V2, -Sketch, -A and -R, into
# OUTPUT/dg/<target>/TaskRes/<cfg>_<K>shots/seed<S>. Table: python parse_results.py OUTPUT --dg
#   DATA=/path/to/datasets bash scripts/taskres/dg.sh [SHOTS] [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
shots=16
if [ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]]; then
    shots=$1
    shift
fi
run_planned runs taskres imagenet "$shots" "${PLAN_OPTS[@]}" \
    --enhanced-base "${ENHANCED_BASE:-}" -- "$@"
run_planned eval taskres imagenet "$shots" --tree dg \
    --targets imagenetv2 imagenet_sketch imagenet_a imagenet_r \
    "${PLAN_OPTS[@]}" --enhanced-base "${ENHANCED_BASE:-}" -- "$@"
