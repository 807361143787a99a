"""Parity of the fast pipeline (cached training views) with the reference pipeline.

For every task (dataset) x method x shot count, the runs of seeds 1-3 under each pipeline, with
the official configs (the planner's own runs, as scripts/<method>/main.sh makes them); printed
per cell: reference mean +- population std over the seeds, each other pipeline's mean +- std,
its difference to the reference mean, and whether that difference is within the reference's
seed spread. Meant for a pretrained CLIP (random weights say nothing about accuracy):

    python -m benchmarks.fast_parity --data DATA --datasets demo_shapes OTHER \\
        --backbone-name RN50 --backbone-path weights.pt [--output parity] [-- KEY VALUE ...]

The data must have clearly more training images per class than the largest shot count (e.g.
48 for shots up to 16): a seed's few-shot subset is then its own draw, as on real datasets.
When the subset is the whole training set, the reference seeds differ only in augmentation,
initialisation and order, their spread is close to 0 and "within the spread" means nothing;
a cell whose reference spread is 0 gets a warning line.

With three seeds the check is noisy: a method whose result swings with its augmentations and
init (CoOp at 1-4 shots) can miss the spread against a rerun of the reference itself.
--redraws R reruns each seed's few-shot subset R-1 more times with other training randomness
(run seed s + 10r, DATASET.FEWSHOT_SEED s): every column then pools its R x seeds runs, and
the table also gives the check one draw at a time and the reference's draws against each other
(how often the reference passes its own check).

Pipelines (--pipelines): reference, exact (the default pipeline: identical to reference),
fast (views in lockstep: epoch e reads view e % V), fast-random (a random view per image and
epoch), fast-random-seeded (random order, and each seed draws its own views). The fast
pipelines run with every V of --views (a column each). Runs are train.py subprocesses, one at
a time; a run whose result.json exists is reused, so the same command resumes.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from tabulate import tabulate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

PIPELINE_OVERRIDES = {
    "reference": ["TRAIN.FEATURE_CACHE.PIPELINE", "reference"],
    "exact": ["TRAIN.FEATURE_CACHE.PIPELINE", "exact-cached-eval"],
    "fast": ["TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEW_ORDER", "cycle",
             "TRAIN.FEATURE_CACHE.VIEWS_PER_SEED", "False"],
    "fast-random": ["TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEW_ORDER", "random",
                    "TRAIN.FEATURE_CACHE.VIEWS_PER_SEED", "False"],
    "fast-random-seeded": ["TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEW_ORDER", "random",
                           "TRAIN.FEATURE_CACHE.VIEWS_PER_SEED", "True"],
}
METHOD_NAMES = ("zeroshot", "taskres", "clip_adapter", "coop")


DEFAULT_VIEWS = 10


def columns(pipelines, views):
    """[(column, pipeline, V)]: the reference and exact pipelines once, each fast pipeline once
    per V. A column is also the folder of its runs: the pipeline's name for V=10, else
    "<pipeline>-v<V>"."""
    result = []
    for pipeline in pipelines:
        if not pipeline.startswith("fast"):
            result.append((pipeline, pipeline, DEFAULT_VIEWS))
            continue
        for v in views:
            result.append((pipeline if v == DEFAULT_VIEWS else f"{pipeline}-v{v}", pipeline, v))
    return result


def redraw_seeds(seeds, redraws):
    """[(draw, run seed, subset seed)]: draw 0 is the seeds themselves; draw r > 0 reruns each
    seed's few-shot subset with run seed `seed + r * offset` (offset: the power of ten above the
    largest seed, so 1-3 become 11-13, 21-23, ...): other augmentations, init and order."""
    offset = 10 ** len(str(max(seeds)))
    return [(r, seed + r * offset, seed) for r in range(redraws) for seed in seeds]


def plan(args):
    """[(dataset, method, shots, column, Run, draw)] of the whole check."""
    from experiments.plan import plan_runs

    backbone = []
    if args.backbone_name:
        backbone += ["MODEL.BACKBONE.NAME", args.backbone_name]
    if args.backbone_path:
        backbone += ["MODEL.BACKBONE.PATH", os.path.abspath(args.backbone_path)]
    cells = []
    for dataset in args.datasets:
        for method in args.methods:
            for shots in ([0] if method == "zeroshot" else args.shots):
                for column, pipeline, views in columns(args.pipelines, args.views):
                    # the default pipeline is bit-identical to the reference and encodes the test set once
                    computed_as = args.reference_as if pipeline == "reference" else pipeline
                    extra = (*backbone, *PIPELINE_OVERRIDES[computed_as], "TRAIN.FEATURE_CACHE.VIEWS",
                             str(views), *args.overrides)
                    output, planned = os.path.join(args.output, column), set()
                    for draw, seed, subset_seed in redraw_seeds(args.seeds, args.redraws):
                        subset = ("DATASET.FEWSHOT_SEED", str(subset_seed)) if draw else ()
                        for run in plan_runs(method, dataset, shots, seeds=[seed], output=output,
                                             root=args.data, extra=(*extra, *subset)):
                            if run.output_dir not in planned:  # a seedless method has one run in all
                                planned.add(run.output_dir)
                                cells.append((dataset, method, shots, column, run, draw))
    return cells


def accuracy(run_dir):
    path = os.path.join(run_dir, "result.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["accuracy"]


def execute(cells):
    todo = [c for c in cells if accuracy(c[4].output_dir) is None]
    print(f"{len(cells)} runs, {len(cells) - len(todo)} already finished")
    for i, (dataset, method, shots, pipeline, run, _) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {dataset} {method} {shots} shots seed {run.seed} {pipeline}", flush=True)
        os.makedirs(run.output_dir, exist_ok=True)
        with open(os.path.join(run.output_dir, "parity.log"), "w") as log:
            proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *run.args], cwd=REPO,
                                  stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            print(f"  failed (exit {proc.returncode}); see {os.path.join(run.output_dir, 'parity.log')}")


def spread(values):
    """(mean, population std) of a cell's accuracies."""
    return statistics.mean(values), statistics.pstdev(values)


def within_spread(values, reference):
    """Whether the mean of `values` is within the population std of `reference` around its mean."""
    mean, _ = spread(values)
    ref_mean, ref_std = spread(reference)
    return abs(mean - ref_mean) <= ref_std + 1e-9


def collect(cells):
    """{(dataset, method, shots): {column: {draw: [accuracy of each finished run]}}}"""
    groups = {}
    for dataset, method, shots, column, run, draw in cells:
        value = accuracy(run.output_dir)
        if value is not None:
            groups.setdefault((dataset, method, shots), {}).setdefault(column, {}).setdefault(draw, []).append(value)
    return groups


def table(cells, column_names, tablefmt="simple"):
    """One row per (dataset, method, shots): mean +- std per column over all its runs (every
    draw), difference to the reference and whether it is within the reference's spread; a
    verdict per column; with several draws, the same check draw by draw (each column's draw r
    against the reference's draw r) and the reference's draws against each other (how often
    the reference itself passes); a warning line per trained cell whose reference runs all
    gave the same accuracy."""
    groups = collect(cells)
    draws = sorted({cell[5] for cell in cells})
    rows, no_spread = [], []
    others = [c for c in column_names if c != "reference"]
    inside, compared = dict.fromkeys(others, 0), dict.fromkeys(others, 0)
    per_draw = {c: [0, 0] for c in [*others, "reference"]}
    for (dataset, method, shots), by_column in groups.items():
        ref_draws = by_column.get("reference", {})
        ref = [v for draw in sorted(ref_draws) for v in ref_draws[draw]]
        row = [dataset, method, shots]
        if ref:
            ref_mean, ref_std = spread(ref)
            row.append(f"{ref_mean:.2f} +- {ref_std:.2f} ({len(ref)})")
            if len(ref) > 1 and ref_std == 0:
                no_spread.append(f"{dataset} {method} {shots} shots")
        else:
            row.append("-")
        for column in others:
            values = [v for draw in sorted(by_column.get(column, {})) for v in by_column[column][draw]]
            if not values:
                row.append("-")
                continue
            mean, std = spread(values)
            cell = f"{mean:.2f} +- {std:.2f} ({len(values)})"
            if ref:
                within = within_spread(values, ref)
                cell += f" {mean - ref_mean:+.2f} {'ok' if within else 'OUT'}"
                inside[column] += within
                compared[column] += 1
            row.append(cell)
            for draw, draw_values in by_column[column].items():
                if len(draws) > 1 and len(ref_draws.get(draw, [])) > 1:
                    per_draw[column][0] += within_spread(draw_values, ref_draws[draw])
                    per_draw[column][1] += 1
        if len(draws) > 1:
            for a in ref_draws:
                for b in ref_draws:
                    if a != b and len(ref_draws[b]) > 1:
                        per_draw["reference"][0] += within_spread(ref_draws[a], ref_draws[b])
                        per_draw["reference"][1] += 1
        rows.append(row)
    print(tabulate(rows, headers=["task", "method", "shots", "reference", *others], tablefmt=tablefmt))
    for column in others:
        print(f"{column}: within the reference seed spread in {inside[column]}/{compared[column]} cells "
              f"(ok: |mean - reference mean| <= reference population std)")
    if len(draws) > 1:
        for column in others:
            k, n = per_draw[column]
            print(f"{column}, one draw at a time (its draw r against the reference's draw r): {k}/{n} cells")
        k, n = per_draw["reference"]
        print(f"reference against itself (its draw r against its draw s, r != s): {k}/{n} cells")
    for cell in no_spread:
        print(f"warning: {cell}: every reference run gave the same accuracy (spread 0), so this cell "
              f"cannot tell a bias from noise (if the few-shot subset is the whole training set, every "
              f"seed trains on the same images: draw more training images per class than shots)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True,
                        help="DATASET.ROOT holding the tasks; draw them with clearly more training images "
                             "per class than the largest --shots (e.g. 48 for 16), or the reference seeds "
                             "share one few-shot subset and their spread means nothing")
    parser.add_argument("--datasets", nargs="+", default=["demo_shapes"],
                        help="dataset config stems (configs/datasets/<stem>.yaml): the tasks")
    parser.add_argument("--methods", nargs="+", choices=METHOD_NAMES, default=list(METHOD_NAMES))
    parser.add_argument("--shots", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--pipelines", nargs="+", choices=list(PIPELINE_OVERRIDES),
                        default=["reference", "fast", "fast-random"])
    parser.add_argument("--reference-as", choices=["reference", "exact"], default="reference",
                        help="compute the reference runs with the reference pipeline or the default one "
                             "(exact: the same numbers bit for bit, the test set encoded once)")
    parser.add_argument("--redraws", type=int, default=1,
                        help="training draws per seed's few-shot subset: draw r > 0 reruns seed s's subset "
                             "with run seed s + r*10 (DATASET.FEWSHOT_SEED s; 100 for seeds above 9); "
                             "the table pools every draw and checks each draw on its own, and the "
                             "reference's draws against each other")
    parser.add_argument("--views", type=int, nargs="+", default=[DEFAULT_VIEWS],
                        help="TRAIN.FEATURE_CACHE.VIEWS of the fast runs (several: a column each)")
    parser.add_argument("--backbone-name", default="", help="MODEL.BACKBONE.NAME")
    parser.add_argument("--backbone-path", default="", help="MODEL.BACKBONE.PATH (the pretrained weights)")
    parser.add_argument("--output", default="parity_output")
    parser.add_argument("--table-only", action="store_true", help="print the table of finished runs only")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-reference-runs", action="store_true",
                        help="train only the other pipelines' runs (the reference runs come from another "
                             "process with the same --output); the table uses those that finished")
    parser.add_argument("overrides", nargs="*", help="KEY VALUE overrides for every run (after --)")
    args = parser.parse_args(argv)
    if args.redraws < 1:
        parser.error(f"--redraws {args.redraws}: use 1 (the seeds only) or more")
    if "reference" not in args.pipelines:
        args.pipelines = ["reference", *args.pipelines]
    cells = plan(args)
    if not args.table_only:
        execute([c for c in cells if not (args.no_reference_runs and c[3] == "reference")])
    table(cells, [c[0] for c in columns(args.pipelines, args.views)], "github" if args.markdown else "simple")


if __name__ == "__main__":
    main()
