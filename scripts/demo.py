#!/usr/bin/env python
"""The demo: zero-shot CLIP, TaskRes, CLIP-Adapter and CoOp on a small benchmark drawn in code,
planned and run as scripts/<method>/main.sh does, tabled and plotted into OUTPUT/<size>-<weights>/;
then the base-to-new protocol (zero-shot CLIP, CoCoOp, KgCoOp, MaPLe, PromptSRC) on a tiny ViT
CLIP, planned as scripts/base2new.sh does, tabled into the same results.md.
"""
import argparse
import itertools
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # datasets/, trainers/ and experiments/ live in the repository root
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)  # clip's import

import torch  # noqa: E402
from clip.clip import _MODELS  # noqa: E402
from clip.model import CLIP  # noqa: E402

from datasets.demo_shapes_generate import TASKS, generate  # noqa: E402
from dassl.utils.errors import UserError  # noqa: E402
from experiments.collect import read_run_result  # noqa: E402
from experiments import layout  # noqa: E402
from experiments.plan import get_method, plan_base2new_runs, plan_runs  # noqa: E402
from experiments.plots import plot_fewshot  # noqa: E402
from experiments.tables import fewshot_markdown, fewshot_tables  # noqa: E402
from experiments.transfer_tables import base2new_report  # noqa: E402
from experiments.execute import available_cpus, cpu_slots, run_parallel, triage  # noqa: E402
from trainers.common import tiny_pretrained  # noqa: E402
from trainers.common.clip_loader import (OFFLINE_ENV, TOY_ARCHITECTURES, cache_dir,  # noqa: E402
                                         resolve_weights_file)
from trainers.common.feature_cache import CACHE_ENV as FEATURE_CACHE_ENV  # noqa: E402

NAMED_TASK = "demo_shapes"  # class names describe the images
UNNAMED_TASK = "demo_land_use"  # they do not, as EuroSAT's names do not for CLIP
METHODS = ("zeroshot", "taskres", "clip_adapter", "coop")  # declared methods, in run order
BASE2NEW_METHODS = ("zeroshot", "cocoop", "kgcoop", "maple", "promptsrc")  # ViT-B/16 in their papers
BACKBONE = "RN50"  # the backbone of every official config the runs use
TINY_CLIP = TOY_ARCHITECTURES["tiny-vit"]  # --quick: random weights, real CLIP code, 32 px
PROBE_TIMEOUT_S = 5  # "is the download server reachable"; the download itself may take minutes


@dataclass(frozen=True)
class Size:
    name: str
    image_size: int  # side of the drawn images
    per_class: tuple  # train, val, test images per class
    shots: tuple
    seeds: tuple
    epochs: dict  # method -> OPTIM.MAX_EPOCH; methods not listed keep their official schedule
    views: int  # TRAIN.FEATURE_CACHE.VIEWS: augmented views per training image
    tiny_clip: bool  # random tiny CLIP instead of BACKBONE (which then may be pretrained)
    base2new_shots: int  # shots per base class
    base2new_overrides: dict  # method -> train.py KEY VALUE pairs; others keep their official settings
    datasets: tuple = (NAMED_TASK,)


# Cached features make an epoch of TaskRes or CLIP-Adapter cost milliseconds, so they keep their
# official epochs; CoOp runs the text encoder at every step, so it gets fewer.
# Base-to-new runs at the official settings of the base-to-new configs (16 shots), except
# --quick: 2 epochs (PromptSRC's epoch aggregation centred on the last one).
FULL = Size("full", 224, (16, 4, 10), (1, 2, 4, 8), (1, 2), {"coop": 50}, views=4,
            tiny_clip=False, base2new_shots=16, base2new_overrides={}, datasets=(NAMED_TASK, UNNAMED_TASK))
QUICK = Size("quick", 32, (2, 1, 4), (1, 2), (1,), {"taskres": 2, "clip_adapter": 2, "coop": 2},
             views=2, tiny_clip=True, base2new_shots=2,
             base2new_overrides={**{m: ("OPTIM.MAX_EPOCH", "2") for m in ("cocoop", "kgcoop", "maple")},
                                 "promptsrc": ("OPTIM.MAX_EPOCH", "2", "TRAINER.PROMPTSRC.GPA_MEAN", "2",
                                               "TRAINER.PROMPTSRC.GPA_STD", "1")})


@dataclass(frozen=True)
class Weights:
    pretrained: bool
    overrides: tuple  # train.py KEY VALUE pairs that select these weights
    note: str  # where they come from, or why they are random
    remedy: str = ""  # random weights: how to get real numbers instead
    tag: str = ""  # the output folder's suffix; "" = pretrained or random
    image_size: int = 0  # side of the drawn images when the weights need their own; 0 = the size's

    @property
    def folder_tag(self):
        return self.tag or ("pretrained" if self.pretrained else "random")


def input_size(side):
    return ("INPUT.SIZE", f"({side}, {side})")


def tiny_pretrained_weights(reason):
    """The tiny CLIP pretrained here (built now if this machine has none yet)."""
    tiny_pretrained.ensure_weights()
    side = tiny_pretrained.ARCHITECTURE["image_resolution"]
    return Weights(True, ("MODEL.BACKBONE.NAME", tiny_pretrained.NAME, *input_size(side)),
                   f"{tiny_pretrained.describe(tiny_pretrained.weights_path())} ({reason})",
                   tag=tiny_pretrained.NAME, image_size=side)


def base2new_weights(size, weights):
    """The ViT that the base-to-new methods need (MaPLe and PromptSRC prompt its layers):
    --quick's random tiny ViT; otherwise the tiny ViT CLIP pretrained here (built now if missing)."""
    if size.tiny_clip:
        return weights
    settings = tiny_pretrained.ViTSettings()
    path = tiny_pretrained.ensure_weights(settings)
    side = tiny_pretrained.VIT_ARCHITECTURE["image_resolution"]
    return Weights(True, ("MODEL.BACKBONE.NAME", tiny_pretrained.VIT_NAME, *input_size(side)),
                   tiny_pretrained.describe(path), tag=tiny_pretrained.VIT_NAME, image_size=side)


def save_tiny_clip(path, seed=0):
    """Random tiny CLIP weights (fp16, like the official files) for --quick; kept once made."""
    if not os.path.isfile(path):
        torch.manual_seed(seed)
        state = {k: v.half() if v.is_floating_point() else v
                 for k, v in CLIP(**TINY_CLIP).state_dict().items()}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save(state, path + ".part")
        os.replace(path + ".part", path)
    return path


def unreachable(url):
    """Why the server of `url` cannot be reached ("" if it can), after a short HEAD request."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"),
                               timeout=PROBE_TIMEOUT_S).close()
        return ""
    except (urllib.error.URLError, OSError) as err:
        host = urllib.parse.urlsplit(url).netloc
        return f"{host} is not reachable ({getattr(err, 'reason', err)})"


def choose_weights(size, force_random, out_root):
    """Decide once which weights every run uses (cache, else download, else the tiny CLIP)."""
    if size.tiny_clip:
        path = save_tiny_clip(os.path.join(out_root, "weights", "tiny_random_clip.pt"))
        return Weights(False, ("MODEL.BACKBONE.PATH", path,
                               *input_size(TINY_CLIP["image_resolution"])),
                       "--quick uses a tiny CLIP architecture with random weights",
                       f"run the full demo (without --quick): it uses pretrained {BACKBONE} "
                       "weights when they are cached or can be downloaded")
    if force_random:
        return Weights(False, ("MODEL.BACKBONE.PRETRAINED", "False"), "--random-weights was given",
                       "run the demo without --random-weights")
    url = _MODELS[BACKBONE]
    cached = os.path.join(cache_dir(), os.path.basename(url))
    remedy = f"download {url} to {cached} (or allow the demo to download it) and run the demo again"
    offline = os.environ.get(OFFLINE_ENV, "") not in ("", "0")
    reason = "" if os.path.isfile(cached) or offline else unreachable(url)
    if reason:
        return tiny_pretrained_weights(f"no {BACKBONE} weights in {cache_dir()} and {reason}; {remedy}")
    try:
        path = resolve_weights_file(BACKBONE)  # checks the sha256; downloads with a progress bar
    except (RuntimeError, OSError) as err:
        return tiny_pretrained_weights(f"{str(err).splitlines()[0]}; {remedy}")
    return Weights(True, ("MODEL.BACKBONE.PATH", path), f"pretrained {BACKBONE} weights from {path}")


def random_banner(weights):
    bar = "!" * 78
    return (f"{bar}\n!! RANDOM WEIGHTS: {weights.note}.\n"
            "!! The pipeline runs for real, but the accuracies below mean nothing about CLIP.\n"
            f"!! For real numbers: {weights.remedy}.\n{bar}")


def plan(size, weights, out_root, data_root, methods=METHODS):
    """Every method x shots x seed on the fast pipeline (features of a few augmented views)."""
    common = (*weights.overrides, "DATALOADER.NUM_WORKERS", "0",
              "TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEWS", str(size.views))
    runs = []
    for dataset in size.datasets:
        for method in methods:
            epochs = ("OPTIM.MAX_EPOCH", str(size.epochs[method])) if method in size.epochs else ()
            for shots in (size.shots if get_method(method).trains else (0,)):
                runs += plan_runs(method, dataset, shots, size.seeds, os.path.join(out_root, "runs"),
                                  data_root, extra=(*common, *epochs))
    return runs


def plan_base2new(size, weights, out_root, data_root, stage):
    """Stage "train": every method on the base classes (evaluation-only methods: tested on them);
    stage "test": the trained models (and the evaluation-only methods) on the new classes."""
    common = (*weights.overrides, "DATALOADER.NUM_WORKERS", "0")
    return [run for dataset in size.datasets for method in BASE2NEW_METHODS
            for run in plan_base2new_runs(method, dataset, stage, shots=size.base2new_shots, seeds=size.seeds[:1],
                                          output=out_root, root=data_root,
                                          extra=(*common, *size.base2new_overrides.get(method, ())))]


def describe(run):
    label = get_method(run.method).label
    task = "" if run.dataset == NAMED_TASK else f" ({TASKS[run.dataset].name})"
    if f"{os.sep}{layout.BASE2NEW_DIR}{os.sep}" in run.output_dir:
        half = "new" if f"{os.sep}{layout.TEST_NEW_DIR}{os.sep}" in run.output_dir else "base"
        task = f", {half} classes{task}"
    if run.seed is None:
        return label + task
    return f"{label} {run.shots} shot{'s' if run.shots > 1 else ''} seed {run.seed}{task}"


def run_all(runs, out_root, jobs):
    """Run (or reuse) every planned run, `jobs` at a time, one line per finished run. After a
    failure no new run starts; the ones under way finish, then the first failure is raised."""
    os.environ.setdefault(FEATURE_CACHE_ENV, os.path.join(out_root, "feature_cache"))
    counter = itertools.count(1)
    todo = triage(runs, fix="delete the demo folder or pass another --output", say=lambda text: None)
    for run in runs:
        if run not in todo:
            print(f"[{next(counter)}/{len(runs)}] {describe(run)}: "
                  f"{read_run_result(run.output_dir).value:.1f}% (finished earlier; kept)", flush=True)
    started = {}

    def finished(outcome):
        run = outcome.run
        text = (f"{read_run_result(run.output_dir).value:.1f}% "
                f"({time.time() - started[run.output_dir]:.0f} s)" if outcome.ok else "FAILED")
        print(f"[{next(counter)}/{len(runs)}] {describe(run)}: {text}", flush=True)

    outcomes = run_parallel(todo, cpu_slots(jobs, hide_gpus=False),
                            lambda run, slot: started.setdefault(run.output_dir, time.time()),
                            finished, stop_after_failure=True)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        with open(failed[0].log, errors="replace") as f:
            tail = "\n".join(f.read().splitlines()[-25:])
        raise UserError(f"{describe(failed[0].run)} failed ({failed[0].detail}); its log is "
                        f"{failed[0].log}. Last lines:\n{tail}")


def write_results(size, weights, vit_weights, out_root):
    """The results tables (each headed by the weights used) into results.md, and the plot."""
    found = fewshot_tables(os.path.join(out_root, "runs"), list(size.datasets), size.seeds)
    plot = plot_fewshot(found, os.path.join(out_root, "fewshot.png"))
    base2new, _ = base2new_report(os.path.join(out_root, layout.BASE2NEW_DIR), list(size.datasets), size.seeds[:1])
    table = (f"Weights: {weights.folder_tag.upper()} ({weights.note})."
             + ("" if weights.pretrained else " Accuracies mean nothing about CLIP.")
             + f"\n\n{fewshot_markdown(found, 'accuracy')}"
             + f"\n# Base-to-new ({size.base2new_shots} shots per base class, seed {size.seeds[0]})\n\n"
             + f"Weights: {vit_weights.folder_tag.upper()} ({vit_weights.note})."
             + ("" if vit_weights.pretrained else " Accuracies mean nothing about CLIP.")
             + f" The papers' numbers beside ours are ViT-B/16 on the real benchmarks.\n\n{base2new}")
    markdown = os.path.join(out_root, "results.md")
    with open(markdown, "w") as f:
        tasks = ", ".join(TASKS[d].name for d in size.datasets)
        f.write(f"# Demo results ({size.name} size, {tasks})\n\n{table}")
    return table, markdown, plot


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="reduced size (tiny random-weight CLIP, few images, 2 epochs): about 1-2 minutes")
    parser.add_argument("--random-weights", action="store_true",
                        help="use random weights even if pretrained ones are available")
    parser.add_argument("--output", default="demo_output", help="output root (default: demo_output)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS),
                        help="declared methods (default: %(default)s; PLUGINS=FILE.py adds more)")
    parser.add_argument("--jobs", type=int, default=min(2, available_cpus()),
                        help="runs at a time (default: 2, or 1 on a single CPU)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1")
    size = QUICK if args.quick else FULL
    started = time.time()
    # The folder depends on the weights, known only after the check: decide them first.
    weights = choose_weights(size, args.random_weights,
                             os.path.join(os.path.abspath(args.output), size.name + "-random"))
    out_root = os.path.join(os.path.abspath(args.output), f"{size.name}-{weights.folder_tag}")
    print(random_banner(weights) if not weights.pretrained else f"Weights: {weights.note}",
          flush=True)
    try:
        data_root = os.path.join(out_root, "data")
        for dataset in size.datasets:
            generate(data_root, weights.image_size or size.image_size, *size.per_class,
                     task=TASKS[dataset])
        runs = plan(size, weights, out_root, data_root, args.methods)
        threads = cpu_slots(args.jobs)[0].env.get("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS"))
        print(f"{len(runs)} runs ({', '.join(get_method(m).label for m in args.methods)}; shots "
              f"{list(size.shots)}, seeds {list(size.seeds)}), {args.jobs} at a time with {threads} "
              f"CPU thread(s) each; logs in {os.path.join(out_root, 'runs')}/<dataset>/<Trainer>/...",
              flush=True)
        run_all(runs, out_root, args.jobs)
        vit_weights = base2new_weights(size, weights)
        print(f"\nBase-to-new ({', '.join(get_method(m).label for m in BASE2NEW_METHODS)}; {size.base2new_shots} "
              f"shots per base class, seed {size.seeds[0]}); weights: {vit_weights.note}; logs in "
              f"{os.path.join(out_root, layout.BASE2NEW_DIR)}/...", flush=True)
        for stage in ("train", "test"):  # the new-class tests load the models trained on the base classes
            run_all(plan_base2new(size, vit_weights, out_root, data_root, stage), out_root, args.jobs)
        table, markdown, plot = write_results(size, weights, vit_weights, out_root)
    except (UserError, FileExistsError, ValueError) as err:  # the demo cannot go on
        print(f"demo error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nInterrupted. Finished runs are kept in {out_root}; run the demo again to do the rest.",
              file=sys.stderr)
        return 130
    print(f"\n{table}")
    if not weights.pretrained:
        print(random_banner(weights))
    print(f"Table: {markdown}\nPlot: {plot}\nDone in {time.time() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
