"""CoOp training step, three text paths side by side: all 77 tokens (the reference), cut at
the longest EOT ("truncated"), and the shared context run once ("shared-context": SOS + context
through the text tower once, each class only over its own tokens).

One step = frozen image encoder on a batch + every class prompt through the text encoder +
cross entropy + backward into the context + SGD update, exactly what `CoOp` does per batch.
CLIP is the architecture `--arch` names with random weights (the loader's random-weights
path: no weights file needed; speed and memory do not depend on the values). Class names are
synthetic, 1-4 words each (seeded), like ImageNet's.

Each configuration runs in a fresh subprocess, so the peak memory of one (ru_maxrss on CPU,
torch's peak allocation on CUDA) cannot hide in another's. The max |logit difference| to
the 77-token path is taken on the first step's logits (same images, same context).

77 tokens at 1000 classes needs about twice the 500-class memory (over 24 GB on CPU), so on
CPU it is not trained: its memory is estimated and its logits come from a no-grad forward.

    python -m benchmarks.coop_text                       # 10, 500, 1000 classes
    python -m benchmarks.coop_text --classes 10 50 --batch 8   # small, a few minutes on CPU
    python -m benchmarks.coop_text --paths truncated shared-context   # skip the 77-token path

`run(report)` is the entry point for benchmarks/speed.py: `report` receives printable lines.
"""
import argparse
import json
import os
import random
import tempfile
import time

from benchmarks.measure import peak_memory_mb, run_child

DEFAULT_CLASSES = (10, 500, 1000)
CPU_FULL_LENGTH_MAX_CLASSES = 500  # above this, 77 tokens does not fit in 24 GB on CPU
PATHS = ("full", "truncated", "shared-context")  # trainers.coop.text_path values; "full" is the reference
_WORDS = ("red", "great", "white", "shark", "dog", "terrier", "sports", "car", "wooden", "spoon",
          "golden", "retriever", "mountain", "bike", "space", "shuttle", "electric", "guitar",
          "grey", "whale", "coffee", "mug", "lesser", "panda", "garden", "spider", "tabby", "cat",
          "steam", "locomotive", "french", "loaf", "traffic", "light", "paper", "towel")


def class_names(n, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4))) + f" {i}" for i in range(n)]


# --------------------------------------------------------------------------- child process
def _measure(spec):
    """Build the model described by `spec`, run the steps, return timings and memory."""
    import torch
    import torch.nn.functional as F

    from dassl.config import get_cfg_default
    from trainers.common.backbone import backbone_from_clip_model
    from trainers.common.clip_loader import build_random_clip
    from trainers.config import extend_cfg
    from trainers.coop import PromptClassifier

    device = torch.device(spec["device"])
    cfg = extend_cfg(get_cfg_default())
    cfg.TRAINER.COOP.TRUNCATE_TEXT = spec["path"] != "full"
    cfg.TRAINER.COOP.SHARED_CONTEXT = spec["path"] == "shared-context"
    cfg.TRAINER.COOP.GRAD_CHECKPOINT = spec["grad_checkpoint"] and spec["path"] != "shared-context"
    clip_model = backbone_from_clip_model(build_random_clip(spec["arch"]), spec["arch"])
    if spec["precision"] == "fp32":
        clip_model.float()
    clip_model.requires_grad_(False)
    clip_model.to(device)
    torch.manual_seed(0)
    classifier = PromptClassifier(cfg, class_names(spec["classes"]), clip_model).to(device)
    optim = torch.optim.SGD(classifier.prompt_learner.parameters(), lr=0.002, momentum=0.9)
    size = clip_model.preprocess.resolution
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(spec["batch"], 3, size, size, generator=generator).to(device, clip_model.dtype)
    labels = torch.randint(spec["classes"], (spec["batch"],), generator=generator).to(device)
    assert classifier.text_path == spec["path"], (classifier.text_path, spec["path"])
    tokens = classifier.prompt_learner.tokenized_prompts
    eot = tokens.argmax(-1)
    n_ctx = classifier.prompt_learner.n_ctx
    if spec["path"] == "full":
        length = tokens.shape[1] * spec["classes"]
    elif spec["path"] == "truncated":
        length = (int(eot.max()) + 1) * spec["classes"]
    elif device.type == "cuda":  # the shared prefix once, then every class padded to the longest tail
        length = 1 + n_ctx + int((eot - n_ctx).max()) * spec["classes"]
    else:  # the shared prefix once, then each class's own tokens
        length = 1 + n_ctx + int((eot - n_ctx).sum())

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        """One training step; returns its logits and the seconds of its text side (everything
        after the frozen image encoder: the part the text path changes)."""
        with torch.no_grad():
            image_features = clip_model.encode_image(images)
        sync()
        text_start = time.perf_counter()
        logits = classifier(image_features)
        loss = F.cross_entropy(logits, labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
        sync()
        return logits.detach(), time.perf_counter() - text_start

    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_gb = peak_memory_mb(device) / 2**10
    times, text_times = [], []
    if spec["logits_only"]:
        with torch.no_grad():
            logits = classifier(clip_model.encode_image(images))
    else:
        for i in range(spec["steps"]):
            start = time.perf_counter()
            out, text_s = step()
            times.append(time.perf_counter() - start)
            text_times.append(text_s)
            if i == 0:
                logits = out
    torch.save(logits.float().cpu(), spec["logits_file"])
    # The first step also warms up kernels and allocators; the fastest of the others is the
    # least disturbed by other processes on a shared machine.
    timed, text_timed = times[1:] or times, text_times[1:] or text_times
    return {"tokens": length, "step_s": min(timed) if timed else None,
            "text_s": min(text_timed) if text_timed else None,
            "peak_gb": peak_memory_mb(device) / 2**10, "base_gb": base_gb}


# --------------------------------------------------------------------------- parent process
def _fmt(value, pattern, width=0):
    return ("-" if value is None else pattern.format(value)).rjust(width)


def run(report=print, classes=DEFAULT_CLASSES, arch="RN50", batch=32, steps=3, device=None,
        precision="fp32", grad_checkpoint=False, full_length_max_classes=None, paths=PATHS):
    """Measure every class count on every text path; return a list of result dicts. The 77-token
    path ("full") always runs, above `full_length_max_classes` as a no-grad forward only (its
    logits are the reference every other path is compared with)."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "fp16" and device == "cpu":
        raise ValueError("fp16 CLIP needs CUDA; use --precision fp32 on CPU")
    if full_length_max_classes is None:
        full_length_max_classes = CPU_FULL_LENGTH_MAX_CLASSES if device == "cpu" else max(classes)
    paths = ["full"] + [p for p in paths if p != "full"]
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    report(f"CoOp step ({arch} random weights, {precision}, batch {batch}, 16 context tokens, "
           f"{'grad checkpointing (not for shared-context), ' if grad_checkpoint else ''}{where}); peak memory: "
           f"{'torch peak allocated' if device == 'cuda' else 'process max RSS'}, step = peak - before step; "
           f"tokens = positions through the text tower per step; ratios against the 77-token path")
    report("step s: whole step; text s: its text side (after the frozen image encoder), what the path changes")
    report(f"{'classes':>7} {'path':>14} {'tokens':>7} {'step s':>8} {'text s':>8} {'peak GB':>8} {'step GB':>8} "
           f"{'step x':>7} {'text x':>7} {'mem ratio':>9} {'max|dlogit|':>11}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in classes:
            rows = {}
            for path in paths:
                if path == "truncated" and n > full_length_max_classes:
                    continue  # large class counts: only the reference logits and the fastest path
                skip = path == "full" and n > full_length_max_classes
                spec = dict(arch=arch, batch=batch, steps=steps, device=device, precision=precision,
                            classes=n, path=path, grad_checkpoint=grad_checkpoint,
                            logits_only=skip, logits_file=_logits_file(tmp, n, path))
                rows[path] = dict(run_child("benchmarks.coop_text", spec), classes=n, path=path, skipped=skip)
            full = rows["full"]
            reference_logits = torch.load(_logits_file(tmp, n, "full"))
            if full["skipped"]:
                full["estimated_step_gb"], full["estimated_text_s"] = _estimate_full(results, n)
            for path, row in rows.items():
                row["max_logit_diff"] = (torch.load(_logits_file(tmp, n, path)) - reference_logits).abs().max().item()
                results.append(row)
                report(_row_line(row, full))
    return results


def _estimate_full(results, n):
    """PROJECTED step memory and text-side time of 77 tokens at n classes: linear in the class
    count (the text transformer's activations and work dominate), from the largest measured
    full-length run. (None, None) without one."""
    measured = [r for r in results if r["path"] == "full" and not r["skipped"]]
    if not measured:
        return None, None
    largest = measured[-1]
    scale = n / largest["classes"]
    return (largest["peak_gb"] - largest["base_gb"]) * scale, largest["text_s"] * scale


def _logits_file(tmp, n, path):
    return os.path.join(tmp, f"logits_{n}_{path}.pt")


def _row_line(row, full):
    if row["skipped"]:
        return (f"{row['classes']:>7} {row['path']:>14} {row['tokens']:>7}  not trained; PROJECTED (linear in the "
                f"class count from the largest measured one): text side ~{_fmt(row.get('estimated_text_s'), '{:.1f}')}"
                f" s, step memory ~{_fmt(row.get('estimated_step_gb'), '{:.1f}')} GB; its no-grad logits are the "
                f"reference")
    if full["skipped"] and full.get("estimated_text_s"):
        projected_x = full["estimated_text_s"] / row["text_s"]
        projected_mem = (row["peak_gb"] - row["base_gb"]) / full["estimated_step_gb"]
        suffix = f"   text {projected_x:.1f}x faster, memory {projected_mem:.2f} of the projected 77-token step"
    else:
        suffix = ""
    step_gb = row["peak_gb"] - row["base_gb"]
    speedup = text_speedup = mem_ratio = None
    if row["path"] != "full" and not full["skipped"]:
        speedup = full["step_s"] / row["step_s"]
        text_speedup = full["text_s"] / row["text_s"]
        full_step_gb = full["peak_gb"] - full["base_gb"]
        # On CPU the peak is the process max RSS, which a step may not raise above start-up.
        mem_ratio = step_gb / full_step_gb if full_step_gb > 0 else None
    return (f"{row['classes']:>7} {row['path']:>14} {row['tokens']:>7} {_fmt(row['step_s'], '{:.2f}', 8)} "
            f"{_fmt(row['text_s'], '{:.2f}', 8)} {row['peak_gb']:8.2f} {step_gb:8.2f} "
            f"{_fmt(speedup, '{:.2f}x', 7)} {_fmt(text_speedup, '{:.2f}x', 7)} "
            f"{_fmt(mem_ratio, '{:.2f}', 9)} {row['max_logit_diff']:11.2e}{suffix}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, nargs="+", default=list(DEFAULT_CLASSES))
    parser.add_argument("--arch", default="RN50", help="CLIP architecture (random weights)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3,
                        help="steps per configuration; the first warms up, the fastest other one is reported")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if present")
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    parser.add_argument("--grad-checkpoint", action="store_true", help="also checkpoint the text blocks")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS),
                        help="text paths to time (the 77-token path always gives the reference logits)")
    parser.add_argument("--full-length-max-classes", type=int, default=None,
                        help=f"train 77 tokens only up to this many classes (CPU default "
                             f"{CPU_FULL_LENGTH_MAX_CLASSES}); larger counts get logits only")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_measure(json.loads(args.child))))
        return
    results = run(classes=args.classes, arch=args.arch, batch=args.batch, steps=args.steps,
                  device=args.device, precision=args.precision, grad_checkpoint=args.grad_checkpoint,
                  full_length_max_classes=args.full_length_max_classes, paths=args.paths)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=4)


if __name__ == "__main__":
    main()
