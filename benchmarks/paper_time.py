"""Projected GPU time of every TaskRes paper item, from a measured per-image cost.

    python -m benchmarks.paper_time [--reference-s-per-image 0.0053] [--cached-s-per-image 0.00625]

Every run of an item (its declaration, experiments.paper) is counted in image-encoder passes:
training epochs x K x classes (the config's OPTIM.MAX_EPOCH, as planned) plus one pass per test
image; Tip-Adapter adds its 10 augmented cache passes, each enhanced base 50 epochs, each DG
test the target's test set. With the feature cache (TRAIN.FEATURE_CACHE.ENABLED True, V=10
views) training costs 10 x K x classes passes whatever the epochs. The costs per pass are the
H100 measurement in docs/performance.md (TaskRes, RN50, 16 shots, 200 epochs: 171.0 s for 32,240 passes with
the reference pipeline, 11.5 s for 1,840 cached), everything in the run included.

A projection, not a measurement: it uses RN50's cost for every backbone (ViT-B/16 is slower),
TaskRes' cost per pass for every method (CoOp also runs the text encoder every step, so its
runs take longer), and ignores the few-shot validation split.
"""
import argparse
import os.path as osp
import tempfile

import yaml
from tabulate import tabulate

from experiments import paper
from experiments.benchmarks import display_name

REFERENCE_S_PER_PASS = 171.0 / 32240
CACHED_S_PER_PASS = 11.5 / 1840
CACHE_VIEWS = 10
TIP_CACHE_PASSES = 10  # Tip-Adapter's augmented passes over the K-shot images
ENHANCED_BASE_EPOCHS = 50

# (classes, test images) of each dataset's split (CoOp's split files; ImageNet: its val set).
SIZES = {
    "imagenet": (1000, 50000), "caltech101": (100, 2465), "oxford_pets": (37, 3669),
    "stanford_cars": (196, 8041), "oxford_flowers": (102, 2463), "food101": (101, 30300),
    "fgvc_aircraft": (100, 3333), "sun397": (397, 19850), "dtd": (47, 1692),
    "eurosat": (10, 8100), "ucf101": (101, 3783), "imagenetv2": (1000, 10000),
    "imagenet_sketch": (1000, 50889), "imagenet_a": (200, 7500), "imagenet_r": (200, 30000),
}


def _epochs(run):
    """The epochs train.py will run: the config's, unless an override sets them."""
    if run.eval_only:
        return 0
    args = run.args
    if "OPTIM.MAX_EPOCH" in args:
        return int(args[args.index("OPTIM.MAX_EPOCH") + 1])
    if "--config-file" not in args:
        return 0
    with open(args[args.index("--config-file") + 1]) as f:
        return int(((yaml.safe_load(f) or {}).get("OPTIM") or {}).get("MAX_EPOCH", 0))


def passes(item):
    """(reference passes, cached passes, runs) of every run `item` needs."""
    with tempfile.TemporaryDirectory() as output:
        cells = paper.cells(item, output, strong_base=osp.join(output, "strong_base"))
    reference = cached = 0
    runs = paper.unique_runs(cells)
    for run in runs:
        classes, test = SIZES[run.dataset]
        train = run.shots * classes
        extra = TIP_CACHE_PASSES * train if run.trainer.startswith("TipAdapter") else 0
        reference += _epochs(run) * train + extra + test
        cached += (min(_epochs(run), CACHE_VIEWS) * train if _epochs(run) else 0) + extra + test
    tests = [c for c in cells if c.dg]
    seen = set()
    for cell in tests:
        if cell.output_dir not in seen:
            seen.add(cell.output_dir)
            reference += SIZES[cell.dataset][1]
            cached += SIZES[cell.dataset][1]
    bases = {(c.dataset, c.backbone, c.shots) for c in cells if c.row.enhanced and not c.dg}
    for dataset, _, shots in bases:
        base = ENHANCED_BASE_EPOCHS * shots * SIZES[dataset][0]
        reference += base
        cached += min(ENHANCED_BASE_EPOCHS, CACHE_VIEWS) * shots * SIZES[dataset][0]
    return reference, cached, len(runs) + len(seen) + len(bases)


def taskres_table_passes():
    """Per benchmark of the full TaskRes table: (display name, runs, image-encoder passes of its
    training images, the same with CACHE_VIEWS cached views, test images)."""
    from experiments.benchmarks import BENCHMARKS, SEEDS, SHOTS
    from experiments.plan import plan_runs
    with tempfile.TemporaryDirectory() as output:
        for dataset in BENCHMARKS:
            classes, test = SIZES[dataset]
            runs = [run for shots in SHOTS
                    for run in plan_runs("taskres", dataset, shots, SEEDS, output, root=output)]
            train = sum(_epochs(run) * run.shots * classes for run in runs)
            fast_train = sum(min(_epochs(run), CACHE_VIEWS) * run.shots * classes for run in runs)
            yield display_name(dataset), len(runs), train, fast_train, test


def taskres_sweep(reference_s, cached_s):
    """Rows (dataset, runs, hours reference / exact default / fast) of the full TaskRes table."""
    rows, totals = [], [0, 0, 0]
    for name, n_runs, train, fast_train, test in taskres_table_passes():
        hours = [(train + n_runs * test) * reference_s / 3600, (train + test) * reference_s / 3600,
                 (fast_train + test) * cached_s / 3600]
        totals = [t + h for t, h in zip(totals, hours)]
        rows.append([name, n_runs, *(f"{h:.2f} h" for h in hours)])
    rows.append(["all 11", sum(r[1] for r in rows), *(f"{h:.1f} h" for h in totals)])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-s-per-image", type=float, default=REFERENCE_S_PER_PASS)
    parser.add_argument("--cached-s-per-image", type=float, default=CACHED_S_PER_PASS)
    parser.add_argument("--taskres-sweep", action="store_true",
                        help="the full TaskRes table (11 datasets x 5 shots x 3 seeds) instead")
    args = parser.parse_args(argv)
    from trainers.common.experiment import load_methods
    load_methods()
    if args.taskres_sweep:
        rows = taskres_sweep(args.reference_s_per_image, args.cached_s_per_image)
        print(tabulate(rows, headers=["dataset", "runs", "reference pipeline", "exact default",
                                      "fast pipeline"], tablefmt="github"))
        return
    lines = []
    for item in paper.ITEMS.values():
        reference, cached, runs = passes(item)
        lines.append([item.name, ", ".join(display_name(d) for d in item.datasets[:2]) +
                      (", ..." if len(item.datasets) > 2 else ""), runs,
                      f"{reference / 1e6:.1f} M",
                      f"{reference * args.reference_s_per_image / 3600:.1f} h",
                      f"{cached * args.cached_s_per_image / 3600:.1f} h"])
    print(tabulate(lines, headers=["item", "datasets", "runs", "image passes (reference)",
                                   "reference pipeline", "feature cache"], tablefmt="github"))


if __name__ == "__main__":
    main()
