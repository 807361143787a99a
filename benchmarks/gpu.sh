#!/usr/bin/env bash
# The GPU figures of docs/performance.md in one run (random CLIP weights: speed does not depend on them):
#   bash benchmarks/gpu.sh OUT_DIR
# 1. train.py on the CUDA paths: CoOp fp16 / fp32 / amp, TaskRes, CLIP-Adapter, zero-shot (RN50,
#    drawn DemoShapes, 2 epochs), and TaskRes reference vs the default exact-cached-eval pipeline;
# 2. CoOp's step at ImageNet's 1000 classes, 77-token reference vs shared context (fp16 and fp32);
# 3. image-encoder throughput of RN50 and ViT-B/16 (fp16, test batch 100);
# 4. one 16-shot run with the official 200 epochs, reference vs fast pipeline, of each method in
#    $METHODS (default: TaskRes CLIP_Adapter; per-pass costs for `python -m benchmarks.paper_time`).
# STAGES="3 4" runs only those stages (default: all four).
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
data=$(mktemp -d)
python=${PYTHON:-python}
log() { echo "== $(date +%T) $*"; }
stage() { [[ " ${STAGES:-1 2 3 4} " == *" $1 "* ]]; }

if stage 1; then
log "1. train.py on CUDA"
"$python" -m datasets.demo_shapes_generate --root "$data" --size 96 --train 16 --val 4 --test 20 >/dev/null
train() {  # NAME TRAINER CONFIG SHOTS KEY VALUE ...
    local name=$1 trainer=$2 config=$3 shots=$4
    shift 4
    local start=$SECONDS flags=()
    [[ $trainer == ZeroshotCLIP ]] && flags=(--eval-only)
    "$python" train.py "${flags[@]}" --root "$data" --seed 1 --trainer "$trainer" --output-dir "$data/runs/$name" \
        --dataset-config-file configs/datasets/demo_shapes.yaml \
        --config-file "configs/trainers/$trainer/$config.yaml" \
        DATASET.NUM_SHOTS "$shots" MODEL.BACKBONE.PRETRAINED False OPTIM.MAX_EPOCH 2 "$@" \
        >"$data/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $((SECONDS - start)) s, $(grep -o '\* accuracy: [0-9.]*%' "$data/$name.log" | tail -1)"
    grep -h "precision\|fp32 on\|Pipeline" "$data/$name.log" | head -3
    [[ $rc == 0 ]] || tail -20 "$data/$name.log"
}
train coop-fp16 CoOp rn50 4 TRAINER.COOP.PREC fp16 &
train coop-fp32 CoOp rn50 4 TRAINER.COOP.PREC fp32 &
train coop-amp CoOp rn50 4 TRAINER.COOP.PREC amp &
wait
train coop-csc-fp16 CoOp rn50 4 TRAINER.COOP.CSC True &
train taskres-fp16 TaskRes adam_lr2e-3_B256_ep200 4 &
train clip-adapter CLIP_Adapter rn50 4 &
wait
train zeroshot ZeroshotCLIP rn50 0 &
train taskres-reference TaskRes adam_lr2e-3_B256_ep200 16 OPTIM.MAX_EPOCH 5 TRAIN.FEATURE_CACHE.PIPELINE reference &
train taskres-exact TaskRes adam_lr2e-3_B256_ep200 16 OPTIM.MAX_EPOCH 5 &
wait
grep -h "accuracy\|Image encoder passes" "$data"/taskres-reference.log "$data"/taskres-exact.log

fi
if stage 2; then
log "2. CoOp step, 1000 classes"
for precision in fp16 fp32; do
    "$python" -m benchmarks.coop_text --device cuda --classes 1000 --steps 10 --precision "$precision" \
        --json "$out/coop_text_$precision.json"
done

fi
if stage 3; then
log "3. image-encoder throughput"
"$python" - <<'EOF'
import time
import torch
from trainers.common.clip_loader import build_random_clip
for arch in ("RN50", "ViT-B/16"):
    model = build_random_clip(arch).cuda().eval()  # fp16 weights, as CLIP's release
    images = torch.randn(100, 3, 224, 224, device="cuda", dtype=torch.half)
    with torch.no_grad():
        for _ in range(3):
            model.encode_image(images)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            model.encode_image(images)
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / 2000
    print(f"{arch}: {seconds * 1e3:.3f} ms per image (fp16, batch 100, forward only)")
EOF

fi
if stage 4; then
log "4. one 16-shot 200-epoch run per method, reference vs fast"
# shellcheck disable=SC2086
"$python" -m benchmarks.speed --sections single --arch RN50 --epochs 100 200 \
    --methods ${METHODS:-TaskRes CLIP_Adapter} --json "$out/speed.json"
fi
log done
