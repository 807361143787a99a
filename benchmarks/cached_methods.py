"""Speed and memory of LP++, CLAP, GDA and ProKeR on cached (synthetic) features.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/cached_methods.py [--part sweep|imagenet|all]

sweep: a 100-class dataset, 1024-dim features, every method x shots (1, 2, 4, 8, 16) x seeds
(1, 2, 3) with its official view count (LP++ 1, CLAP 20, GDA 10, ProKeR 10) and search grid
(ProKeR: the Caltech101 grid, 20 betas x 10 lambdas), printing each run's time beside the time
of one encoder pass (RN50, random weights, 224 px) over the same images (support views,
validation and test images), measured on a batch and scaled per image. ProKeR runs whose
kernel has more than --proker-full-max support points are timed on one beta of the grid (one
eigendecomposition and all lambdas) and scaled to the whole grid; those lines say so.

imagenet: 1000 classes, 16 shots, 1024-dim features: GDA (10 views: 160,000 support
vectors) and ProKeR (ImageNet's one view: 16,000 support points, its 10 x 10 grid; timed on
one beta and scaled, as above), each in its own process so the peak resident memory
(ru_maxrss) is the method's own.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from trainers.common.cached_methods import kernel_solve_bytes  # noqa: E402
from trainers.common.classifier import l2_normalize  # noqa: E402

SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)
VIEWS = {"LP++": 1, "CLAP": 20, "GDA": 10, "ProKeR": 10}
DIM = 1024


def synthetic(n_classes, shots, views, seed, dim=DIM, val_per=None, test_per=30):
    """Clustered CLIP-like features: support [V, N, D] (unnormalised), labels, val, test, text."""
    g = torch.Generator().manual_seed(seed)
    centres = l2_normalize(torch.randn(n_classes, dim, generator=g))
    text = l2_normalize(centres + 0.9 * l2_normalize(torch.randn(n_classes, dim, generator=g)))

    def draw(per_class, n_views=1):
        labels = torch.arange(n_classes).repeat_interleave(per_class)
        noise = torch.randn(n_views, len(labels), dim, generator=g) * 0.045
        return 8.0 * (centres[labels] + noise), labels

    support, labels = draw(shots, views)
    val, val_labels = draw(val_per or min(shots, 4))
    test, test_labels = draw(test_per)
    return support, labels, val[0], val_labels, test[0], test_labels, text


def accuracy(logits, labels):
    return (logits.argmax(1) == labels).float().mean().item() * 100


def clap_optim_cfg():
    from dassl.config import get_cfg_default
    from trainers.config import extend_cfg
    cfg = extend_cfg(get_cfg_default())
    cfg.merge_from_file(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                     "configs", "trainers", "CLAP", "rn50.yaml"))
    return cfg


def run_method(method, data, seed, proker_full_max, cfg=None, grid="Caltech101"):
    """(seconds, test accuracy, note) of one run on features already in memory."""
    support, labels, val, val_labels, test, test_labels, text = data
    n_classes = text.shape[0]
    start = time.perf_counter()
    note = ""
    if method == "LP++":
        from trainers.lp_plus_plus import lp_plus_plus
        w, b, a, _ = lp_plus_plus(l2_normalize(support[0]), labels, text, l2_normalize(val), val_labels, seed=seed)
        f = l2_normalize(test)
        logits = f @ w.T + b + a * (f @ text.T)
    elif method == "CLAP":
        from trainers.clap import clap_logits, train_clap
        flat = support.reshape(-1, support.shape[-1])
        protos, _, _ = train_clap(flat, labels.repeat(support.shape[0]), text, 100.0, cfg.OPTIM, cfg.OPTIM.MAX_EPOCH,
                                  256, support.shape[1], seed)
        logits = clap_logits(test, protos, 100.0)
    elif method == "GDA":
        from trainers.gda import TEXT_SCALE, gda_classifier, search_alpha
        flat = l2_normalize(support).reshape(-1, support.shape[-1])
        w, b = gda_classifier(flat, labels.repeat(support.shape[0]), n_classes)
        v = l2_normalize(val)
        alpha, _, _ = search_alpha(TEXT_SCALE * v @ text.T, v @ w + b, val_labels)
        f = l2_normalize(test)
        logits = TEXT_SCALE * f @ text.T + alpha * (f @ w + b)
    else:
        from trainers.proker import grid_of, proker_fit, proker_search, rbf_kernel, solve_dtype
        flat = l2_normalize(support).reshape(-1, support.shape[-1])
        dtype = solve_dtype(flat.shape[0], val.shape[0], n_classes, MEMORY_LIMIT_GIB * 2 ** 30)
        flat, t, v = flat.to(dtype), text.to(dtype), l2_normalize(val).to(dtype)
        onehot = torch.nn.functional.one_hot(labels.repeat(support.shape[0]), n_classes).to(dtype)
        betas, lambdas, _ = grid_of(grid)
        scale = 1
        if flat.shape[0] > proker_full_max:
            n = flat.shape[0]
            if n in _PER_BETA:  # the same kernel size was timed at an earlier seed: the search costs the same
                return _PER_BETA[n] * len(betas), float("nan"), f"as timed at the first seed ({n:,} points)"
            scale, betas = len(betas), betas[:1]
            note = f"one of {scale} betas timed, x{scale}; {str(dtype)[6:]}"
        beta, lmbda, _, _ = proker_search(flat, onehot, t, v, val_labels, betas, lambdas)
        coef = proker_fit(flat, onehot, t, beta, lmbda)
        f = l2_normalize(test).to(dtype)
        logits = f @ t.T + rbf_kernel(f, flat, beta) @ coef
        seconds = (time.perf_counter() - start) * scale
        if scale > 1:
            _PER_BETA[flat.shape[0]] = seconds / scale
        return seconds, accuracy(logits, test_labels), note
    return time.perf_counter() - start, accuracy(logits, test_labels), note


_PER_BETA = {}  # support points -> seconds of one beta of the ProKeR search


def encoder_seconds_per_image(batch=8, repeats=2):
    """Seconds per image of RN50's image encoder (random weights, fp32, 224 px) on this machine."""
    from clip.model import ModifiedResNet
    encoder = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, input_resolution=224, width=64).eval()
    images = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        encoder(images[:2])
        start = time.perf_counter()
        for _ in range(repeats):
            encoder(images)
    return (time.perf_counter() - start) / (repeats * batch)


def sweep(args):
    cfg = clap_optim_cfg()
    per_image = encoder_seconds_per_image()
    print(f"RN50 image encoder: {per_image * 1000:.1f} ms per image (random weights, fp32, "
          f"{torch.get_num_threads()} threads)")
    print(f"{'method':7} {'shots':>5} {'seed':>4} {'views':>5} {'run s':>8} {'encode s':>9} {'acc %':>6}  note")
    totals = {m: 0.0 for m in VIEWS}
    for shots in args.shots:
        for seed in SEEDS:
            for method, views in VIEWS.items():
                data = synthetic(args.classes, shots, views, seed)
                n_images = views * data[0].shape[1] + data[2].shape[0] + data[4].shape[0]
                seconds, acc, note = run_method(method, data, seed, args.proker_full_max, cfg)
                totals[method] += seconds
                print(f"{method:7} {shots:5d} {seed:4d} {views:5d} {seconds:8.2f} {n_images * per_image:9.1f} "
                      f"{acc:6.2f}  {note}", flush=True)
    print("Total per method over 5 shot counts x 3 seeds: " +
          ", ".join(f"{m} {s:.1f} s" for m, s in totals.items()) + f"; all {sum(totals.values()):.1f} s")


def imagenet_one(method):
    """One ImageNet-size run in this process; prints a JSON line with time and peak memory."""
    views = 10 if method == "GDA" else 1
    data = synthetic(1000, 16, views, 1, test_per=10)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds, acc, note = run_method(method, data, 1, proker_full_max=0, grid="ImageNet")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"method": method, "support": views * 16000, "seconds": seconds, "accuracy": acc,
                      "peak_rss_gib": peak / 2 ** 20, "rss_before_gib": before / 2 ** 20, "note": note,
                      "estimated_solve_gib_f64": kernel_solve_bytes(16000, 8, 4000, 1000) / 2 ** 30}))


def imagenet(args):
    for method in args.imagenet_methods:
        proc = subprocess.run([sys.executable, __file__, "--imagenet-one", method, "--memory-limit-gib",
                               str(args.memory_limit_gib)], capture_output=True, text=True)
        line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
        print(f"ImageNet size (1000 classes, 16 shots, {DIM}-dim): {line}", flush=True)


MEMORY_LIMIT_GIB = 24.0


def main():
    global MEMORY_LIMIT_GIB
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("sweep", "imagenet", "all"), default="all")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    parser.add_argument("--imagenet-methods", nargs="+", default=["GDA", "ProKeR"], choices=["GDA", "ProKeR"])
    parser.add_argument("--proker-full-max", type=int, default=4000,
                        help="ProKeR kernels with more support points are timed on one beta and scaled")
    parser.add_argument("--memory-limit-gib", type=float, default=24.0,
                        help="ProKeR solves in float64 below this, else float32 (TRAINER.CACHED.MEMORY_LIMIT_GIB)")
    parser.add_argument("--imagenet-one", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    MEMORY_LIMIT_GIB = args.memory_limit_gib
    if args.imagenet_one:
        imagenet_one(args.imagenet_one)
        return
    if args.part in ("sweep", "all"):
        sweep(args)
    if args.part in ("imagenet", "all"):
        imagenet(args)


if __name__ == "__main__":
    main()
