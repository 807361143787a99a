# shellcheck shell=bash
# Sourced by the experiment scripts: finds the interpreter and hands the work to the one entry
# point, python -m sweep.script (planning, the skip/resume/FORCE logic and the runs are there).
#
# Environment:
#   DATA     dataset root (required): the folder holding imagenet/, dtd/, ...
#   OUTPUT   output root (default: output, relative to the current folder)
#   SEEDS    seeds to run (default: "1 2 3")
#   FORCE    1: move finished (and unfinished) run folders aside and run again
#   CFG      a config file name instead of the method's choice (configs/trainers/<Trainer>/)
#   TRAINER  one of the method's alternative trainers (e.g. ZeroshotCLIP2)
#   FAST     1: the fast pipeline (cached augmented views; part of the run's recorded request)
#   PLUGINS  files declaring more methods, separated by ':'
#   PYTHON   interpreter (default: .venv/bin/python of this repository when present)
# A finished run is skipped only when the settings in its result.json equal the requested
# ones; otherwise the script stops (exit 2) and says what differs.
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

# experiment COMMAND ARGS...: run python -m sweep.script from any folder.
experiment() {
    PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m sweep.script "$@"
}
