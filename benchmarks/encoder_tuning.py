"""One training step of the encoder-tuning methods beside a full fine-tune and beside CoOp.

A step = a batch through the image encoder + every class prompt through the text encoder +
cross entropy + backward + AdamW update, what CLIP-LoRA, CLIP-SVD and 2SFS (stage 1) do per
batch; "full fine-tune" trains every CLIP weight with the same loss; CoOp trains its 16 context
vectors (the image encoder frozen, no gradient). CLIP is ViT-B/16 with random weights (speed and
memory do not depend on the values). On a GPU: autocast fp16 on fp32 weights, PyTorch's fused
attention; on a CPU: fp32.

Each method runs in a fresh subprocess, so its peak memory (ru_maxrss on CPU, torch's peak
allocation on CUDA) cannot hide in another's; the time is the median of the measured steps after
one warm-up step.

    python -m benchmarks.encoder_tuning                        # batch 32, 10 classes
    python -m benchmarks.encoder_tuning --batch 4 --steps 2    # CPU: a few minutes
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("clip_lora", "clip_svd", "two_stage", "full_finetune", "coop")
LABELS = {"clip_lora": "CLIP-LoRA", "clip_svd": "CLIP-SVD", "two_stage": "2SFS (stage 1)",
          "full_finetune": "full fine-tune", "coop": "CoOp"}


def _classnames(n):
    return [f"class number {i}" for i in range(n)]


def _build(method, model, classnames, device):
    import clip
    import torch

    from trainers.common.encoder_surgery import add_lora, add_singular_values, block_layernorm_parameters
    both = ("text", "vision")
    coop = None
    if method == "clip_lora":
        params = list(add_lora(model, both, ("q", "k", "v"), rank=2, alpha=1, dropout=0.25).values())
    elif method == "clip_svd":
        params = list(add_singular_values(model, both, ("q", "k", "v", "o")).values())
    elif method == "two_stage":
        params = list(block_layernorm_parameters(model, both).values())
    elif method == "full_finetune":
        params = list(model.parameters())
    else:
        from dassl.config import get_cfg_default
        from trainers.common.backbone import backbone_from_clip_model
        from trainers.coop import PromptClassifier
        from trainers.config import extend_cfg
        cfg = extend_cfg(get_cfg_default())
        coop = PromptClassifier(cfg, classnames, backbone_from_clip_model(model.to(device), "ViT-B/16"))
        params = [coop.prompt_learner.ctx]
    for p in params:
        p.requires_grad_(True)
    model.to(device)
    tokens = clip.tokenize([f"a photo of a {c}." for c in classnames]).to(device)
    optim = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    return params, tokens, optim, coop


def measure(method, batch, steps, n_classes):
    """Runs in the child process: {"ms": median step time, "peak_mb", "params"}."""
    import torch
    import torch.nn.functional as F

    from trainers.common.clip_loader import build_random_clip
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_random_clip("ViT-B/16").float().requires_grad_(False)
    classnames = _classnames(n_classes)
    params, tokens, optim, coop = _build(method, model, classnames, device)
    model.train()
    images = torch.randn(batch, 3, 224, 224, device=device)
    labels = torch.arange(batch, device=device) % n_classes
    amp = (torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else torch.autocast("cpu", enabled=False))
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for step in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with amp:
            if coop is not None:
                with torch.no_grad():
                    img = model.encode_image(images)
                txt = coop.class_features()
            else:
                img, txt = model.encode_image(images), model.encode_text(tokens)
            img = img / img.norm(dim=-1, keepdim=True)
            txt = txt / txt.norm(dim=-1, keepdim=True)
            loss = F.cross_entropy(100 * img.float() @ txt.float().t(), labels)
        optim.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
        else:
            loss.backward()
            optim.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step warms up
            times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2 ** 20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms": 1000 * statistics.median(times), "peak_mb": peak, "params": sum(p.numel() for p in params),
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="measured steps (after one warm-up)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(measure(args.one, args.batch, args.steps, args.classes)))
        return
    print(f"ViT-B/16 (random weights), batch {args.batch}, {args.classes} classes, median of {args.steps} steps "
          f"after 1 warm-up; each method in its own process")
    rows = []
    header = f"{'method':<18} {'trainable params':>17} {'step (ms)':>10} {'peak memory (MiB)':>18}"
    print(header, flush=True)
    for method in args.methods:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.encoder_tuning", "--one", method, "--batch",
                               str(args.batch), "--steps", str(args.steps), "--classes", str(args.classes)],
                              cwd=REPO, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{LABELS[method]}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(line[0][len("RESULT "):])
        rows.append((method, r))
        print(f"{LABELS[method]:<18} {r['params']:>17,} {r['ms']:>10.0f} {r['peak_mb']:>18.0f}", flush=True)
    if rows:
        print(f"device: {rows[0][1]['device']}")


if __name__ == "__main__":
    main()
