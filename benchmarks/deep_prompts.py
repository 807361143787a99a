"""Training step of the deep-prompt methods beside CoOp: MaPLe, PromptSRC and CoOp side by side.

One step = what each trainer's `forward_backward` does per batch: MaPLe and PromptSRC prompt
both encoders (the image encoder runs with gradients through it; PromptSRC also runs the frozen
image encoder and its three consistency losses), CoOp runs the frozen image encoder without
gradients and its context through the text encoder. The real trainer classes are used (built
without data: class names are synthetic), on the architecture `--arch` names with random
weights (speed and memory do not depend on the values), at the precision the device allows
(fp32 on CPU).

Each method runs in a fresh subprocess, so one's peak memory cannot hide in another's: on CPU
the peak resident memory of the process and its growth over the steps (ru_maxrss minus the
resident memory before the first step), on CUDA torch's peak allocation during the steps.

    python -m benchmarks.deep_prompts                                   # tiny ViT, CPU, small sizes
    python -m benchmarks.deep_prompts --arch ViT-B/16 --classes 100 --batch 4 --steps 3
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
METHODS = {  # trainer -> its base-to-new config (CoOp: the ViT-B/16 config)
    "CoOp": "CoOp/vit_b16_ep50.yaml",
    "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml",
    "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
}


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _measure(spec):
    """Build the trainer's model as its build_model does, run the steps, return timings and memory."""
    from types import SimpleNamespace

    import torch

    import trainers  # noqa: F401  (registers the trainers)
    from dassl.config import get_cfg_default
    from dassl.engine import TRAINER_REGISTRY
    from dassl.engine.trainer import TrainerBase
    from trainers.common.clip_loader import CLIP_ARCHITECTURES, TOY_ARCHITECTURES, TINY_ARCHITECTURE_OF
    from trainers.config import extend_cfg

    torch.manual_seed(0)
    cfg = extend_cfg(get_cfg_default())
    cfg.merge_from_file(os.path.join(REPO, "configs", "trainers", METHODS[spec["trainer"]]))
    arch = spec["arch"]
    table = {**CLIP_ARCHITECTURES, **{n: TOY_ARCHITECTURES[a] for n, a in TINY_ARCHITECTURE_OF.items()}}
    side = table[arch]["image_resolution"]
    cfg.merge_from_list(["MODEL.BACKBONE.NAME", arch, "MODEL.BACKBONE.PRETRAINED", "False",
                         "INPUT.SIZE", f"({side}, {side})", "TRAINER.NAME", spec["trainer"]])
    device = torch.device(spec["device"])
    names = [f"class {i}" for i in range(spec["classes"])]

    trainer = object.__new__(TRAINER_REGISTRY.get(spec["trainer"]))
    TrainerBase.__init__(trainer)
    trainer.cfg, trainer.device = cfg, device
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=names))
    trainer.image_encoder_forwards, trainer.feature_cache, trainer.pipeline = 0, None, {"name": "reference"}
    trainer.epoch, trainer.max_epoch, trainer.batch_idx, trainer.num_batches = 0, 1, 0, 10**9
    trainer.build_model()
    if spec["trainer"] == "PromptSRC":
        trainer.frozen_text_features = trainer.frozen_class_features()
    trainer.set_model_mode("train")

    generator = torch.Generator().manual_seed(1)
    batch = {"img": torch.randn(spec["batch"], 3, side, side, generator=generator),
             "label": torch.randint(spec["classes"], (spec["batch"],), generator=generator)}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = _rss_mb()
    times = []
    for _ in range(spec["steps"] + 1):  # the first step warms up
        start = time.perf_counter()
        trainer.forward_backward(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    memory = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak - before)
    return {"step_s": statistics.median(times[1:]), "memory_mb": memory, "peak_rss_mb": peak,
            "trainable_params": trainer.count_trainable_params()}


def measure_in_subprocess(spec):
    code = ("import json, sys; sys.path.insert(0, %r); from benchmarks.deep_prompts import _measure; "
            "print('RESULT ' + json.dumps(_measure(json.loads(sys.argv[1]))))" % REPO)
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], cwd=REPO, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{spec['trainer']} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def run(report=print, arch="tiny-vit-pretrained", classes=(10, 100), batch=4, steps=5, device=None):
    import torch
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    memory_label = "peak alloc MB" if device == "cuda" else "RSS growth MB"
    report(f"Deep prompts vs CoOp: one training step ({arch}, random weights, batch {batch}, {device}, "
           f"median of {steps} steps after one warm-up)")
    report(f"{'classes':>8} {'method':<10} {'step ms':>9} {'x CoOp':>7} {memory_label:>14} {'peak RSS MB':>12} "
           f"{'trained':>9}")
    for n in classes:
        results = {}
        for trainer in METHODS:
            spec = dict(trainer=trainer, arch=arch, classes=n, batch=batch, steps=steps, device=device)
            results[trainer] = measure_in_subprocess(spec)
        for trainer, r in results.items():
            ratio = r["step_s"] / results["CoOp"]["step_s"]
            report(f"{n:>8} {trainer:<10} {r['step_s'] * 1000:>9.1f} {ratio:>7.2f} {r['memory_mb']:>14.1f} "
                   f"{r['peak_rss_mb']:>12.0f} {r['trainable_params']:>9,}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny-vit-pretrained",
                        help="tiny-vit-pretrained (default, CPU-sized) or an OpenAI ViT name, e.g. ViT-B/16")
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--batch", type=int, default=4, help="images per step (the official configs: 4)")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    run(print, args.arch, args.classes, args.batch, args.steps, args.device)


if __name__ == "__main__":
    main()
