# shellcheck shell=bash
# Sourced by the experiment scripts: finds the interpreter and hands the work to the one entry
# point, python -m experiments.script (planning, the skip/resume/FORCE logic and the runs are there).
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
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    PYTHON="$REPO_ROOT/.venv/bin/python"
    [ -x "$PYTHON" ] || PYTHON=python3
fi

# experiment COMMAND ARGS...: run python -m experiments.script from any folder.
experiment() {
    PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m experiments.script "$@"
}
