#!/usr/bin/env bash
# Every run of the TaskRes paper's table5, with the paper's settings and seeds 1 2 3; finished runs
# are skipped, so the command can be run again at any time. Then: python parse_results.py OUTPUT --paper table5
#   DATA=/path/to/datasets bash scripts/paper/table5.sh [KEY VALUE ...]
# Narrow the grid with DATASETS, SHOTS, SEEDS, BACKBONES, TARGETS (see experiments/paper_run.py).
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
experiment paper table5 "$@"
