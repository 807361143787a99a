"""CoCoOp step time and peak memory: ours against the official per-image loop, side by side.

CoCoOp runs every class prompt through the text tower once per image. The official code builds
all 77 positions of every class prompt for each image and encodes them in a Python loop, one
image at a time (`reference` below, written from its description: prompts + positional
embedding, CLIP's own transformer with its 77x77 mask, ln_final, the EOT feature, projection).
Ours (trainers/cocoop.py, shared-context path) runs each image's SOS + context once and then
every class over its own tokens only, all images of a batch together.

Measured per class count: one training step (batch 1, as the official config: Meta-Net,
prompts, text tower, cross entropy, backward, SGD) and one no-grad test batch. Both
implementations start from the same weights and images, and their logits are asserted equal
(float tolerance) before anything is printed. Each configuration runs in a fresh subprocess, so
peak memory (process max RSS on CPU, torch's peak allocation on CUDA) is its own.

The default CLIP is small (text tower 128 wide, 2 layers, random weights), so the 77-token
reference at 1000 classes finishes on a CPU in a few minutes; `--arch ViT-B/16` measures the
real one (a GPU is advisable).

    python -m benchmarks.cocoop                     # 100 and 1000 classes, CPU, a few minutes
    python -m benchmarks.cocoop --arch ViT-B/16 --device cuda
"""
import argparse
import json
import os
import sys
import tempfile
import time

from benchmarks.measure import peak_memory_mb, run_child

IMPLS = ("reference", "ours")
# Small CLIP: a real CLIP architecture, narrower and shallower (the vocabulary stays real).
SMALL = dict(embed_dim=128, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16,
             context_length=77, vocab_size=49408, transformer_width=128, transformer_heads=2,
             transformer_layers=2)


def reference_logits(classifier, clip_model, image_features):
    """The official CoCoOp forward: per image, all class prompts at 77 positions."""
    import torch
    learner = classifier.prompt_learner
    features = image_features / image_features.norm(dim=-1, keepdim=True)
    ctx = learner.ctx.unsqueeze(0) + learner.meta_net(features).unsqueeze(1)
    tokens = learner.tokenized_prompts
    eot = tokens.argmax(dim=-1)
    logits = []
    for ctx_i, feature in zip(ctx, features):
        prompts = torch.cat([learner.token_prefix, ctx_i.unsqueeze(0).expand(learner.n_cls, -1, -1),
                             learner.token_suffix], dim=1)
        x = (prompts + clip_model.positional_embedding).permute(1, 0, 2)
        x = clip_model.transformer(x).permute(1, 0, 2)
        x = clip_model.ln_final(x)
        text = x[torch.arange(x.shape[0]), eot] @ clip_model.text_projection
        text = text / text.norm(dim=-1, keepdim=True)
        logits.append(clip_model.logit_scale.exp() * feature @ text.t())
    return torch.stack(logits)


def _measure(spec):
    import torch
    import torch.nn.functional as F
    from clip.model import CLIP

    from benchmarks.coop_text import class_names
    from dassl.config import get_cfg_default
    from trainers.cocoop import ConditionalPromptClassifier
    from trainers.common.backbone import backbone_from_clip_model
    from trainers.common.clip_loader import build_random_clip
    from trainers.config import extend_cfg

    device = torch.device(spec["device"])
    torch.manual_seed(0)
    clip_model = CLIP(**SMALL) if spec["arch"] == "small" else build_random_clip(spec["arch"])
    clip_model.float().requires_grad_(False).eval().to(device)
    cfg = extend_cfg(get_cfg_default())
    cfg.TRAINER.COCOOP.N_CTX, cfg.TRAINER.COCOOP.CTX_INIT = 4, "a photo of a"
    torch.manual_seed(1)
    # ours through the model interface; the official reference reads the clip model directly
    backbone = backbone_from_clip_model(clip_model, spec["arch"])
    classifier = ConditionalPromptClassifier(cfg, class_names(spec["classes"]), backbone).to(device)
    optim = torch.optim.SGD(classifier.prompt_learner.parameters(), lr=0.002, momentum=0.9)
    generator = torch.Generator().manual_seed(2)
    dim = clip_model.text_projection.shape[1]
    train_features = torch.randn(spec["steps"], 1, dim, generator=generator).to(device)
    labels = torch.randint(spec["classes"], (spec["steps"], 1), generator=generator).to(device)
    test_features = torch.randn(spec["eval_batch"], dim, generator=generator).to(device)

    def forward(features):
        if spec["impl"] == "reference":
            return reference_logits(classifier, clip_model, features)
        return classifier(features)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = peak_memory_mb(device)
    step_times, train_logits = [], []
    for features, label in zip(train_features, labels):
        sync()
        start = time.perf_counter()
        logits = forward(features)
        loss = F.cross_entropy(logits, label)
        optim.zero_grad()
        loss.backward()
        optim.step()
        sync()
        step_times.append(time.perf_counter() - start)
        train_logits.append(logits.detach().cpu())
    step_peak = peak_memory_mb(device)
    with torch.no_grad():
        sync()
        start = time.perf_counter()
        test_logits = forward(test_features)
        sync()
        eval_s = time.perf_counter() - start
    torch.save({"train": torch.cat(train_logits), "test": test_logits.cpu()}, spec["logits_file"])
    timed = step_times[1:] or step_times  # the first step also warms up kernels and allocators
    return {"step_s": min(timed), "eval_s": eval_s, "step_mb": step_peak - base, "peak_mb": peak_memory_mb(device) - base}


def run(report=print, classes=(100, 1000), arch="small", steps=3, eval_batch=4, device=None, atol=1e-4):
    """Measure both implementations at every class count; assert equal logits; return the rows."""
    import torch
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    report(f"CoCoOp ({arch} CLIP, random weights, fp32, 4 context tokens; {where}). step: one training step at "
           f"batch 1 (fastest of {max(1, steps - 1)}); test: one no-grad batch of {eval_batch} images; memory: "
           f"{'torch peak allocated' if device == 'cuda' else 'process max RSS'} above the model, MB")
    report(f"{'classes':>7} {'impl':>9} {'step s':>8} {'test s':>8} {'step MB':>9} {'peak MB':>9} "
           f"{'step x':>7} {'test x':>7} {'mem ratio':>9} {'max|dlogit|':>11}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in classes:
            rows, logits = {}, {}
            for impl in IMPLS:
                path = os.path.join(tmp, f"{n}_{impl}.pt")
                spec = dict(arch=arch, classes=n, impl=impl, steps=steps, eval_batch=eval_batch, device=device,
                            logits_file=path)
                rows[impl] = dict(run_child("benchmarks.cocoop", spec), classes=n, impl=impl)
                logits[impl] = torch.load(path)
            diff = max((logits["ours"][k] - logits["reference"][k]).abs().max().item() for k in ("train", "test"))
            scale = max(logits["reference"][k].abs().max().item() for k in ("train", "test"))
            assert diff <= atol * max(1.0, scale), f"{n} classes: logits differ by {diff} (scale {scale})"
            ref = rows["reference"]
            for impl, row in rows.items():
                row["max_logit_diff"] = 0.0 if impl == "reference" else diff
                report(f"{n:>7} {impl:>9} {row['step_s']:>8.4f} {row['eval_s']:>8.4f} {row['step_mb']:>9.1f} "
                       f"{row['peak_mb']:>9.1f} {ref['step_s'] / row['step_s']:>6.1f}x "
                       f"{ref['eval_s'] / row['eval_s']:>6.1f}x {row['peak_mb'] / max(ref['peak_mb'], 1e-9):>9.2f} "
                       f"{row['max_logit_diff']:>11.2e}")
                results.append(row)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--arch", default="small", help="small (default) or a CLIP name (ViT-B/16, RN50, ...)")
    parser.add_argument("--steps", type=int, default=3, help="training steps per configuration")
    parser.add_argument("--eval-batch", type=int, default=4, help="images of the no-grad test batch")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(json.loads(args.child))))
        return 0
    run(classes=args.classes, arch=args.arch, steps=args.steps, eval_batch=args.eval_batch, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
