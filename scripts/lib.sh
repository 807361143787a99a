# shellcheck shell=bash
# Shared logic of the experiment scripts; sourced by them, not run on its own.
#
# Which runs exist (config per dataset and shots, seed loop, output folder, train.py
# arguments, DATA check) is decided by the planner, python -m fewshot_grid.plan, which Python
# sweep launchers share. This file adds the run loop: a run is done only when the engine
# wrote its result.json; a finished run is skipped, an unfinished one (crashed, killed) runs
# again and train.py resumes from its checkpoints, FORCE=1 moves the old folder aside
# (<dir>.replaced-<time>, never deleted) and reruns.
#
# Environment:
#   DATA     dataset root (required): the folder holding imagenet/, dtd/, ...
#   OUTPUT   output root (default: output, relative to the current folder)
#   SEEDS    seeds to run (default: "1 2 3")
#   FORCE    1: rerun finished runs too
#   CFG      a config file name instead of the official choice (configs/trainers/<Trainer>/)
#   PYTHON   interpreter (default: .venv/bin/python of this repository when present)
set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$SCRIPTS_DIR")"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$REPO_ROOT/.venv/bin/python" ]; then
        PYTHON="$REPO_ROOT/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi
OUTPUT="${OUTPUT:-output}"
SEEDS="${SEEDS:-1 2 3}"
FORCE="${FORCE:-0}"
# Planner options every script passes ($SEEDS is split into words on purpose).
# shellcheck disable=SC2206,SC2034
PLAN_OPTS=(--output "$OUTPUT" --seeds $SEEDS --cfg "${CFG:-}")

usage() {
    echo "usage: $*" >&2
    exit 2
}

# plan COMMAND ARGS...: call the run planner (fewshot_grid/plan.py) from any folder.
plan() {
    PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m fewshot_grid.plan "$@"
}

# run_planned PLANNER_ARGS... [-- KEY VALUE ...]: plan the runs, then run each one that has
# not finished. Stops at the first run that fails.
run_planned() {
    local planned line status dir
    planned="$(plan "$@")" || exit $?
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        local -a run=()
        eval "run=($line)"  # the planner shell-quotes every field
        status="${run[0]}"
        dir="${run[1]}"
        if [ "$FORCE" = 1 ] && [ "$status" != new ]; then
            echo "[force] $dir moved aside to $(plan archive "$dir")"
            status=new
        fi
        case "$status" in
            done)
                echo "[skip] $dir: finished (result.json exists); FORCE=1 reruns it"
                continue ;;
            unfinished)
                echo "[resume] $dir: unfinished (no result.json); running it again" \
                     "(training resumes from its last checkpoint, the old log is kept)" ;;
            *)
                echo "[run] $dir" ;;
        esac
        "$PYTHON" "$REPO_ROOT/train.py" "${run[@]:2}" </dev/null
    done <<< "$planned"
}
