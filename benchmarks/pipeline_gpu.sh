#!/usr/bin/env bash
# The exact pipeline on a GPU machine (issue 25's GPU targets), sized for a ~10-minute slot:
#   bash benchmarks/pipeline_gpu.sh OUT_DIR
# TaskRes, CoOp and CLIP-Adapter, 16 shots, RN50 and ViT-B/16 random weights at 224 px, exact vs
# reference pipeline side by side (asserted bit-identical), time per epoch split into decode /
# augment / host-to-device / encoder / step, ratio to the encoder-only time of the same passes,
# N runs at once vs one after another, and the full TaskRes table projected from the RN50
# TaskRes cost per encoder pass. EPOCHS (default 20; official 200), WORKERS (default 8),
# PARALLEL (default 2), ARCHS (default "RN50 ViT-B/16") override the sizes.
set -uo pipefail
out=${1:?usage: bash benchmarks/pipeline_gpu.sh OUT_DIR}
mkdir -p "$out"
python=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"
nproc | sed 's/^/cpus: /' | tee -a "$out/gpu.txt"
# shellcheck disable=SC2086
OMP_WAIT_POLICY=PASSIVE "$python" -m benchmarks.pipeline --device cuda --arch ${ARCHS:-RN50 ViT-B/16} \
    --epochs "${EPOCHS:-20}" --workers "${WORKERS:-8}" --parallel "${PARALLEL:-2}" 2>&1 | tee "$out/pipeline.txt"
