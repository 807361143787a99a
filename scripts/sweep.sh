#!/usr/bin/env bash
# Every dataset x shot count of one method: the 11 benchmarks x 1 2 4 8 16 shots (zeroshot:
# the 11 datasets). Runs scripts/<method>/main.sh (or scripts/zeroshot.sh) for each; finished
# runs are skipped, so the sweep can be started again after a stop. A failing run does not
# stop the sweep; the failures are listed at the end (exit status 1).
#   DATA=/path/to/datasets bash scripts/sweep.sh METHOD [KEY VALUE ...]
# METHOD: taskres, coop, clip_adapter or zeroshot. DATASETS="dtd eurosat" and SHOTS="1 16"
# restrict the grid; the other settings (SEEDS, OUTPUT, FORCE, ...) pass through.
# LAUNCHER=local|slurm runs the grid in parallel through python -m sweep (see below).
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[ $# -ge 1 ] || usage "bash scripts/sweep.sh METHOD [KEY VALUE ...]"
method=$1
shift
grid_opts=()
# shellcheck disable=SC2206
[ -z "${DATASETS:-}" ] || grid_opts+=(--datasets $DATASETS)
# shellcheck disable=SC2206
[ -z "${SHOTS:-}" ] || grid_opts+=(--shots $SHOTS)
# LAUNCHER=local (runs in parallel: one job per GPU, or CPU workers) or LAUNCHER=slurm hands
# the same grid to the sweep launcher, python -m sweep (see its --help); its own options go in
# SWEEP_OPTS, e.g. SWEEP_OPTS="--partition gpu --array-parallelism 32" or "--dry-run".
if [ -n "${LAUNCHER:-}" ]; then
    [ "$FORCE" != 1 ] || usage "FORCE=1 does not go with LAUNCHER: move the finished runs aside" \
        "(python -m fewshot_grid.plan archive RUN_DIR), then sweep again"
    # shellcheck disable=SC2206
    sweep_opts=(--launcher "$LAUNCHER" --methods "$method" "${grid_opts[@]}" --output "$OUTPUT"
                --seeds $SEEDS --cfg "${CFG:-}" --enhanced-base "${ENHANCED_BASE:-}"
                --zeroshot-trainer "${TRAINER:-}" --nctx "${NCTX:-16}" --csc "${CSC:-False}"
                --ctp "${CTP:-end}" ${SWEEP_OPTS:-})
    PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m sweep \
        "${sweep_opts[@]}" -- "$@"
fi
pairs="$(plan grid "$method" "${grid_opts[@]}")" || exit $?
# Fail once, early, on what every run shares (DATA, CFG, the method) rather than once per run.
# shellcheck disable=SC2086
plan runs "$method" ${pairs%%$'\n'*} "${PLAN_OPTS[@]}" >/dev/null || exit $?
failed=()
while read -r dataset shots; do
    if [ "$method" = zeroshot ]; then
        cmd=("$SCRIPTS_DIR/zeroshot.sh" "$dataset")
    else
        cmd=("$SCRIPTS_DIR/$method/main.sh" "$dataset" "$shots")
    fi
    echo "=== $method: $dataset, $shots shots"
    if ! bash "${cmd[@]}" "$@" </dev/null; then
        failed+=("$dataset $shots")
    fi
done <<< "$pairs"
if [ ${#failed[@]} -gt 0 ]; then
    echo "=== $method: ${#failed[@]} failed (rerun them with main.sh; see their log.txt):" >&2
    printf '    %s shots\n' "${failed[@]}" >&2
    exit 1
fi
echo "=== $method: all done. Table: python parse_results.py $OUTPUT --table"
