"""Pipelines side by side (reference, exact-cached-eval = the default, fast): wall time,
image-encoder passes, accuracy; and CoOp's text paths.

    python -m benchmarks.speed              # CPU: small CLIP, short runs, a few minutes
    python -m benchmarks.speed --arch RN50 --epochs 100 200 --classes 10   # full size (GPU)

Sections (--sections, default all of them, in this order):
  exact   TaskRes over 5 shot counts x 3 seeds, reference vs the default exact-cached-eval
          (one cache shared by the 15 runs, empty at the start): identical metrics and weights
          (sha256), test-side encoder passes, wall time; per-image costs measured here and
          the end-to-end ratio projected for a EuroSAT-sized sweep (8,100 test images);
  (single, sweep and parity compare the fast pipeline, V cached views, with the reference)
  single  one TaskRes and one CLIP-Adapter run, cached vs reference: same data, seed, epochs;
  sweep   TaskRes over 5 shot counts x 3 seeds: cached (one cache shared by the 15 runs,
          empty at the start) vs reference;
  parity  final accuracy, mean and spread (population std) over the seeds, cached vs
          reference: TaskRes at every shot count of the sweep, CLIP-Adapter at the largest;
          then the cached accuracy for every V of --parity-views (how many views are enough);
  coop    CoOp step time and peak memory, text encoder cut at the EOT vs 77 tokens
          (benchmarks/coop_text.py).

Every run is a real trainer built by train.py's own config code, in this process, logging to
its own file; "encoder passes" is the trainer's counter (`image_encoder_forwards`), which
also counts the passes that build the cache. Cached runs start from an empty cache root, so
their wall time includes building it.

Data: a synthetic image folder (noisy oriented gratings, one orientation per class, random
colour, frequency and phase), drawn into a temp dir and read as DATASET.NAME ImageFolder.
CLIP: random weights, no weights file needed (speed does not depend on the values; accuracy
then only shows that both pipelines learn the same thing), BatchNorm statistics calibrated on
separate synthetic images. On CUDA the default is RN50 at 224 px; on CPU "small" (a reduced
ResNet CLIP at 64 px) with 1/10 of the official epochs, so the default finishes in minutes;
"tiny" (32 px, the test suite's size) runs the official epochs on CPU in about 20 minutes:

    python -m benchmarks.speed --arch tiny --classes 4 --per-class 40 --epochs 100 200 \
        --sections single sweep parity --parity-views 1 2 5 10 20
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from tabulate import tabulate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python benchmarks/speed.py` as well as `python -m benchmarks.speed`
    sys.path.insert(0, REPO)

from benchmarks.bench_data import (CALIBRATION_PER_CLASS, SMALL_CLIP, TINY_CLIP,  # noqa: E402
                                   clip_options, write_gratings)
from benchmarks.fast_parity import spread, within_spread  # noqa: E402

SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)
# The configs the official training scripts use (TaskRes here with residual scale 0.5, as
# its scripts set for most datasets); CLIP-Adapter uses CoOp's schedule. MAX_EPOCH is set per run.
METHODS = {
    "TaskRes": ("TaskRes/adam_lr2e-3_B256_ep200.yaml", ["TRAINER.TaskRes.RESIDUAL_SCALE", "0.5"]),
    "CLIP_Adapter": ("CLIP_Adapter/rn50.yaml", []),
}


# ----------------------------------------------------------------------------- one run
def weights_digest(trainer):
    """sha256 of every trained module's weights: equal digests = bit-identical models."""
    import hashlib
    digest = hashlib.sha256()
    for name in trainer.get_model_names():
        for key, tensor in trainer._models[name].state_dict().items():
            digest.update(f"{name}/{key}".encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Bench:
    """Shared settings of every run, and the runner."""

    def __init__(self, args, tmp):
        self.args, self.tmp = args, tmp
        self.data_root = os.path.join(tmp, "data")
        write_gratings(os.path.join(self.data_root, "gratings"), args.classes, args.per_class, args.image_size)
        calibration = write_gratings(os.path.join(tmp, "calibration"), args.classes, CALIBRATION_PER_CLASS,
                                     args.image_size, seed=1)
        self.clip_opts, self.calibrated = clip_options(args.arch, tmp, calibration)
        self.n_runs = 0
        self.done = {}  # (method, shots, seed, pipeline, views) -> latest result of such a run

    def epochs(self, shots):
        low, high = self.args.epochs
        return low if shots <= 4 else high

    def argv(self, method, shots, seed, pipeline, name, cache_root=None, views=None):
        """train.py arguments of one run."""
        config, method_opts = METHODS[method]
        if method == "CLIP_Adapter" and self.args.adapter_lr is not None:
            method_opts = [*method_opts, "OPTIM.LR", str(self.args.adapter_lr)]
        return [
            "--root", self.data_root, "--seed", str(seed), "--trainer", method,
            "--output-dir", os.path.join(self.tmp, "runs", name),
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "image_folder.yaml"),
            "--config-file", os.path.join(REPO, "configs", "trainers", config),
            "DATASET.IMAGE_FOLDER.DIR", "gratings", "DATASET.IMAGE_FOLDER.TRAIN_FRACTION", "0.5",
            "DATASET.IMAGE_FOLDER.VAL_FRACTION", "0.1", "DATASET.NUM_SHOTS", str(shots),
            "OPTIM.MAX_EPOCH", str(self.epochs(shots)), "DATALOADER.NUM_WORKERS", str(self.args.workers),
            "TRAIN.PRINT_FREQ", "1000", "TRAIN.FEATURE_CACHE.PIPELINE", pipeline,
            "TRAIN.FEATURE_CACHE.VIEWS", str(views or self.args.views),
            "TRAIN.FEATURE_CACHE.ROOT", cache_root or os.path.join(self.tmp, "unused-cache"),
            *self.clip_opts, *method_opts,
        ]

    def time_test_encoding(self):
        """Seconds per test image through the image encoder (loading and transform included),
        timed on the test loader of a reference-pipeline TaskRes trainer; sets `self.n_test`."""
        import train
        from dassl.engine import build_trainer

        os.makedirs(os.path.join(self.tmp, "logs"), exist_ok=True)
        with open(os.path.join(self.tmp, "logs", "time-test.txt"), "w") as f, contextlib.redirect_stdout(f):
            argv = self.argv("TaskRes", 1, 1, "reference", "time-test")
            trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(argv)))
        trainer.open_test_split()  # nothing is trained here: only the test pass is timed
        self.n_test = len(trainer.dm.dataset.test)
        start = time.perf_counter()
        for batch in trainer.dm.test_loader:
            trainer.image_features(batch["img"].to(trainer.device))
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / self.n_test

    def run(self, method, shots, seed, cached, cache_root=None, views=None, pipeline=None):
        """Train and test one model; returns its wall time, encoder passes and accuracy.
        `pipeline` defaults to "fast" when `cached`, else "reference"."""
        import train
        from dassl.engine import build_trainer
        from dassl.utils import set_random_seed

        pipeline = pipeline or ("fast" if cached else "reference")
        self.n_runs += 1
        name = f"{self.n_runs:03d}-{method}-{shots}shot-seed{seed}-{pipeline}"
        argv = self.argv(method, shots, seed, pipeline, name, cache_root, views)
        log = os.path.join(self.tmp, "logs", name + ".txt")
        os.makedirs(os.path.dirname(log), exist_ok=True)
        with open(log, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            start = time.perf_counter()
            cfg = train.setup_cfg(train.build_parser().parse_args(argv))
            set_random_seed(cfg.SEED)
            trainer = build_trainer(cfg)
            trainer.train()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - start
        views = (views or self.args.views) if pipeline == "fast" else None
        result = dict(method=method, shots=shots, seed=seed, epochs=self.epochs(shots),
                      pipeline=pipeline, views=views, wall_s=wall, passes=trainer.image_encoder_forwards,
                      accuracy=trainer.last_results["accuracy"], metrics=dict(trainer.last_results),
                      weights_sha256=weights_digest(trainer), log=log)
        self.done[(method, shots, seed, pipeline, views)] = result
        return result

    def get(self, method, shots, seed, cached, cache_root=None, views=None):
        """A run's result, reusing an earlier identical run (the reference runs are the
        expensive ones; single, sweep and parity share them)."""
        key = (method, shots, seed, "fast" if cached else "reference", (views or self.args.views) if cached else None)
        return self.done.get(key) or self.run(method, shots, seed, cached, cache_root, views)

    def fresh_cache(self, label):
        return os.path.join(self.tmp, "caches", label)


# ----------------------------------------------------------------------------- sections
def ratio(a, b):
    return a / b if b else float("inf")


def section_single(bench, report, results):
    shots, seed = max(SHOTS), SEEDS[0]
    report(f"\n## 1. One run per method: {shots} shots, seed {seed}, {bench.epochs(shots)} epochs "
           f"(cached: empty cache at the start, V={bench.args.views})")
    rows, lines = [], []
    for method in bench.args.methods:
        ref = bench.get(method, shots, seed, cached=False)
        hit = bench.run(method, shots, seed, cached=True, cache_root=bench.fresh_cache(f"single-{method}"))
        results["single"] += [ref, hit]
        for r in (ref, hit):
            rows.append([method, r["pipeline"], f"{r['wall_s']:.1f}", f"{r['passes']:,}", f"{r['accuracy']:.1f}"])
        lines.append(f"{method}: {ratio(ref['wall_s'], hit['wall_s']):.1f}x faster, "
                     f"{ratio(ref['passes'], hit['passes']):.1f}x fewer encoder passes")
    report(tabulate(rows, headers=["method", "pipeline", "wall s", "encoder passes", "accuracy %"]))
    for line in lines:
        report(line)


def section_sweep(bench, report, results):
    report(f"\n## 2. Sweep: TaskRes, shots {list(SHOTS)} x seeds {list(SEEDS)} = {len(SHOTS) * len(SEEDS)} runs, "
           f"epochs {bench.args.epochs[0]} (<= 4 shots) / {bench.args.epochs[1]} (8, 16 shots); cached runs "
           f"share one cache, empty at the start (V={bench.args.views})")
    cache = bench.fresh_cache("sweep")
    totals = {}
    for cached in (False, True):
        run = bench.run if cached else bench.get  # every cached run here shares the sweep's cache
        runs = [run("TaskRes", k, s, cached=cached, cache_root=cache) for k in SHOTS for s in SEEDS]
        results["sweep"] += runs
        totals[cached] = (sum(r["passes"] for r in runs), sum(r["wall_s"] for r in runs))
    rows = [[name, f"{totals[c][0]:,}", f"{totals[c][1]:.1f}"] for name, c in (("reference", False), ("cached", True))]
    report(tabulate(rows, headers=["pipeline", "encoder passes (15 runs)", "wall s (15 runs)"]))
    report(f"sweep: {ratio(totals[False][0], totals[True][0]):.1f}x fewer encoder passes, "
           f"{ratio(totals[False][1], totals[True][1]):.1f}x faster")


def _parity_row(method, shots, ref, hit, label="cached"):
    (rm, rs), (cm, cs) = spread(ref), spread(hit)
    return [method, shots, label, f"{rm:.2f} +- {rs:.2f}", f"{cm:.2f} +- {cs:.2f}", f"{cm - rm:+.2f}",
            "yes" if within_spread(hit, ref) else "NO"]


def section_parity(bench, report, results):
    report(f"\n## 3. Parity: final test accuracy over seeds {list(SEEDS)}, mean +- population std "
           f"(within spread: |cached mean - reference mean| <= reference std)")

    def accuracies(method, shots, cached, views=None):
        runs = [bench.get(method, shots, seed, cached, bench.fresh_cache(f"parity-V{views}"), views) for seed in SEEDS]
        results["parity"] += [r for r in runs if r not in results["parity"]]
        return [r["accuracy"] for r in runs]

    rows = []
    top = max(SHOTS)
    cases = [("TaskRes", k, bench.args.views) for k in SHOTS] + [("CLIP_Adapter", top, bench.args.views)]
    cases += [(m, top, v) for v in bench.args.parity_views if v != bench.args.views for m in METHODS]
    for method, shots, views in cases:
        rows.append(_parity_row(method, shots, accuracies(method, shots, False),
                                accuracies(method, shots, True, views), f"V={views}"))
    report(tabulate(rows, headers=["method", "shots", "cache", "reference %", "cached %", "diff", "within spread"]))


def section_coop(bench, report, results):
    from benchmarks import coop_text
    report("\n## 4. CoOp text encoder (benchmarks/coop_text.py)")
    args = bench.args
    arch = "RN50" if args.arch == "small" else args.arch
    results["coop"] = coop_text.run(report=report, classes=args.coop_classes, arch=arch,
                                    batch=args.coop_batch, steps=3)


EUROSAT_TEST_IMAGES = 8100
EUROSAT_CLASSES = 10


def section_exact(bench, report, results):
    """Reference vs the default pipeline over a sweep: identical runs, test set encoded once."""
    report(f"\n## 0. Exact default (exact-cached-eval) vs reference: TaskRes, shots {list(SHOTS)} x seeds "
           f"{list(SEEDS)} = {len(SHOTS) * len(SEEDS)} runs; exact runs share one cache, empty at the start")
    cache = bench.fresh_cache("exact")
    pairs = []
    for shots in SHOTS:
        for seed in SEEDS:
            ref = bench.get("TaskRes", shots, seed, cached=False)
            exact = bench.run("TaskRes", shots, seed, cached=None, cache_root=cache, pipeline="exact-cached-eval")
            pairs.append((ref, exact))
            results["exact"] += [ref, exact]
    test_s_per_image = bench.time_test_encoding()
    n_test = bench.n_test
    identical = sum(r["metrics"] == e["metrics"] and r["weights_sha256"] == e["weights_sha256"] for r, e in pairs)
    ref_test_passes = n_test * len(pairs)  # every reference run encodes the test set once
    # The training side is the same in both pipelines (fresh augmentations every step).
    exact_test_passes = sum(e["passes"] - (r["passes"] - n_test) for r, e in pairs)
    ref_wall, exact_wall = sum(r["wall_s"] for r, _ in pairs), sum(e["wall_s"] for _, e in pairs)
    rows = [["reference", f"{ref_test_passes:,}", f"{sum(r['passes'] for r, _ in pairs):,}", f"{ref_wall:.1f}"],
            ["exact-cached-eval", f"{exact_test_passes:,}", f"{sum(e['passes'] for _, e in pairs):,}",
             f"{exact_wall:.1f}"]]
    report(tabulate(rows, headers=["pipeline", f"test-side encoder passes ({n_test} test images)",
                                   "all encoder passes", "wall s (15 runs)"]))
    report(f"identical runs (all metrics and sha256 of the trained weights): {identical}/{len(pairs)}; "
           f"test-side passes {ratio(ref_test_passes, exact_test_passes):.1f}x fewer; "
           f"this sweep {ratio(ref_wall, exact_wall):.2f}x faster end to end (measured)")

    # Per-image costs, measured here, projected to a EuroSAT-sized sweep.
    # Each reference run: overhead + training image-steps x per-image cost + its test set; the
    # overhead and the per-image training cost are fitted over the 15 runs (their steps differ).
    steps = [r["passes"] - n_test for r, _ in pairs]
    train_s_per_image, overhead_s = np.polyfit(steps, [r["wall_s"] - n_test * test_s_per_image for r, _ in pairs], 1)
    euro_train = len(SEEDS) * sum(EUROSAT_CLASSES * k * (100 if k <= 4 else 200) for k in SHOTS)
    fixed = len(pairs) * overhead_s + euro_train * train_s_per_image
    euro_ref = fixed + len(pairs) * EUROSAT_TEST_IMAGES * test_s_per_image
    euro_exact = fixed + EUROSAT_TEST_IMAGES * test_s_per_image
    report(f"per image (measured): test encoding {test_s_per_image * 1e3:.2f} ms; training (encoder, "
           f"augmentation, step; fitted over the runs) {train_s_per_image * 1e3:.2f} ms; per-run overhead "
           f"{overhead_s:.2f} s")
    report(f"PROJECTED EuroSAT-sized TaskRes sweep ({EUROSAT_TEST_IMAGES:,} test images, {EUROSAT_CLASSES} classes, "
           f"official epochs 100/200: {euro_train:,} training image-steps) at these per-image costs: reference "
           f"{euro_ref / 3600:.2f} h, exact {euro_exact / 3600:.2f} h: {ratio(euro_ref, euro_exact):.2f}x end to end")
    results["exact_summary"] = [dict(identical=identical, runs=len(pairs), ref_test_passes=ref_test_passes,
                                    exact_test_passes=exact_test_passes, ref_wall_s=ref_wall,
                                    exact_wall_s=exact_wall, test_s_per_image=test_s_per_image,
                                    train_s_per_image=train_s_per_image, eurosat_projected_ratio=euro_ref / euro_exact)]


SECTIONS = {"exact": section_exact, "single": section_single, "sweep": section_sweep, "parity": section_parity,
            "coop": section_coop}


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--arch", default="RN50" if cuda else "small",
                        help="CLIP architecture with random weights: a ResNet CLIP name (RN50, RN101, ...), "
                             "'small' (reduced ResNet, 64 px) or 'tiny' (32 px); default RN50 on CUDA, "
                             "small on CPU")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                        help="methods of the single section")
    parser.add_argument("--classes", type=int, default=10 if cuda else 6)
    parser.add_argument("--per-class", type=int, default=60 if cuda else 40,
                        help="images per class; split 50%% train (the few-shot pool) / 10%% val / 40%% test")
    parser.add_argument("--image-size", type=int, default=128, help="side of the synthetic JPEGs")
    parser.add_argument("--epochs", type=int, nargs=2, metavar=("LOW", "HIGH"),
                        default=[100, 200] if cuda else [10, 20],
                        help="epochs for 1/2/4 shots and for 8/16 shots (official: 100 200)")
    parser.add_argument("--views", type=int, default=None,
                        help="TRAIN.FEATURE_CACHE.VIEWS of the cached runs (default: the config default)")
    parser.add_argument("--parity-views", type=int, nargs="*", default=[1, 2, 5, 10, 20] if cuda else [],
                        help="also measure cached accuracy at these V (16 shots, 3 seeds, both methods)")
    parser.add_argument("--adapter-lr", type=float, default=0.1,
                        help="CLIP-Adapter OPTIM.LR (official 2e-3). With random-weight text features the "
                             "official lr learns nothing in 200 epochs (chance accuracy on both pipelines, "
                             "which says nothing about parity); speed does not depend on it")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1) if cuda else 0,
                        help="DATALOADER.NUM_WORKERS of every run")
    parser.add_argument("--coop-classes", type=int, nargs="+", default=[10, 500, 1000] if cuda else [10, 50])
    parser.add_argument("--coop-batch", type=int, default=32 if cuda else 8)
    parser.add_argument("--json", help="also write every run's numbers to this file")
    args = parser.parse_args(argv)
    if args.views is None:
        from dassl.config import get_cfg_default
        from trainers.config import extend_cfg
        args.views = extend_cfg(get_cfg_default()).TRAIN.FEATURE_CACHE.VIEWS
    if args.per_class // 2 < max(SHOTS):
        parser.error(f"--per-class {args.per_class} leaves {args.per_class // 2} training images per class; "
                     f"the sweep needs {max(SHOTS)}: use at least {2 * max(SHOTS)}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # as train.py does
        where = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        where = f"cpu ({torch.get_num_threads()} threads)"
    results = {"exact": [], "exact_summary": [], "single": [], "sweep": [], "parity": [], "coop": []}
    report = lambda line: print(line, flush=True)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="speed-bench-") as tmp:
        bench = Bench(args, tmp)
        size = {"small": SMALL_CLIP, "tiny": TINY_CLIP}.get(args.arch, {}).get("image_resolution", 224)
        n_train, n_val = args.per_class // 2, args.per_class // 10
        report(f"# Feature cache benchmark on {where}\n"
               f"sizes: CLIP {args.arch}, random weights, {size} px, BatchNorm statistics of its "
               f"{bench.calibrated} BN layers calibrated on {args.classes * CALIBRATION_PER_CLASS} separate "
               f"images; {args.classes} classes x {args.per_class} synthetic {args.image_size} px JPEGs (per class "
               f"{n_train} train / {n_val} val / {args.per_class - n_train - n_val} test); epochs {args.epochs[0]} "
               f"(1-4 shots) / {args.epochs[1]} (8-16 shots); V={args.views}; DATALOADER.NUM_WORKERS "
               f"{args.workers}; official method configs (TaskRes Adam lr 2e-3 batch 256; CLIP-Adapter SGD "
               f"batch 32, lr {args.adapter_lr:g} instead of 2e-3, see --adapter-lr)")
        for name in args.sections:
            start = time.perf_counter()
            SECTIONS[name](bench, report, results)
            report(f"(section {name}: {time.perf_counter() - start:.0f} s)")
    if args.json:
        for runs in results.values():
            for run in runs:
                run.pop("log", None)
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=4)


if __name__ == "__main__":
    main()
