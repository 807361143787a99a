"""Expand (method, dataset, shots, seeds) into train.py runs: config file, output folder and the
full argument list. The shell scripts (`scripts/lib.sh`) and Python sweep launchers both call
this, so they run the same experiments into the same folders by construction.

Per-dataset and per-shot choices follow the official settings (SPEC 6.1):
- CoOp: config rn50_ep50 (1 shot), rn50_ep100 (2, 4 shots), rn50 (8, 16 shots: 200 epochs);
  ImageNet rn50_ep50 for every shot count; variant folder nctx16_cscFalse_ctpend.
- TaskRes: adam_lr2e-3_B256_ep100 (1, 2, 4 shots) / _ep200 (8, 16); ImageNet lr 2e-4;
  alpha (TRAINER.TaskRes.RESIDUAL_SCALE) 0.5, OxfordFlowers 1.0; an enhanced base runs into the
  variant folder `enhanced_base`.
- CLIP-Adapter: no official configs exist; CoOp's schedule (same config names).
- zeroshot: ZeroshotCLIP (or ZeroshotCLIP2) with config rn50, eval-only, one seedless run.

Command line (the shell scripts use the `shell` format: one run per line, shell-quoted fields
`STATUS RUN_DIR TRAIN_PY_ARGS...`, STATUS = done | unfinished | new):

    python -m fewshot_grid.plan runs METHOD DATASET SHOTS [--seeds 1 2 3] [-- KEY VALUE ...]
    python -m fewshot_grid.plan eval METHOD SOURCE SHOTS --targets T ... --tree eval|dg [...]
    python -m fewshot_grid.plan grid METHOD [--datasets ...] [--shots ...]
    python -m fewshot_grid.plan archive RUN_DIR
"""
import argparse
import json
import os
import os.path as osp
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import List, Optional

import yaml

from . import layout
from .benchmarks import BENCHMARKS, SEEDS, SHOTS

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class PlanError(Exception):
    """A run that cannot be planned (unknown dataset, missing config, no data root, ...)."""


@dataclass(frozen=True)
class Run:
    method: str
    trainer: str
    dataset: str  # config stem of the dataset the run uses
    shots: int
    seed: Optional[int]  # None: seedless (zero-shot)
    cfg: str
    variant: str
    output_dir: str
    args: List[str] = field(default_factory=list)  # train.py arguments
    eval_only: bool = False

    @property
    def status(self):
        if layout.is_finished(self.output_dir):
            return "done"
        return "unfinished" if osp.exists(self.output_dir) else "new"


# ---------------------------------------------------------------- method settings

def _coop_schedule(dataset, shots):
    if dataset == "imagenet" or shots <= 1:
        return "rn50_ep50"
    return "rn50_ep100" if shots <= 4 else "rn50"


def _taskres_cfg(dataset, shots):
    lr = "2e-4" if dataset == "imagenet" else "2e-3"
    return f"adam_lr{lr}_B256_ep{100 if shots <= 4 else 200}"


def _taskres_alpha(dataset):
    return 1.0 if dataset == "oxford_flowers" else 0.5


@dataclass(frozen=True)
class MethodSpec:
    trainer: str
    eval_only: bool = False  # zero-shot: nothing trains


METHODS = {
    "taskres": MethodSpec("TaskRes"),
    "coop": MethodSpec("CoOp"),
    "clip_adapter": MethodSpec("CLIP_Adapter"),
    "zeroshot": MethodSpec("ZeroshotCLIP", eval_only=True),
}


@dataclass(frozen=True)
class Options:
    """What a user may change beyond method, dataset and shots (scripts: env variables)."""
    cfg: str = ""  # force a config file name (CFG)
    trainer: str = ""  # zeroshot only: ZeroshotCLIP or ZeroshotCLIP2 (TRAINER)
    enhanced_base: str = ""  # taskres: weights file, or a strong_base/ folder (ENHANCED_BASE)
    n_ctx: int = 16  # coop (NCTX)
    csc: bool = False  # coop (CSC)
    ctp: str = "end"  # coop class token position (CTP)
    extra: tuple = ()  # trailing KEY VALUE overrides, last so they win


def _uses_enhanced_base(opts):
    return bool(opts.enhanced_base) and opts.enhanced_base.lower() != "none"


def _method_choice(method, dataset, shots, opts):
    """(trainer, cfg, variant, train.py flags, config overrides) of one method."""
    trainer, flags, overrides, variant = METHODS[method].trainer, [], [], ""
    if method != "taskres" and _uses_enhanced_base(opts):
        raise PlanError(f"ENHANCED_BASE applies to taskres only, not {method}")
    if opts.trainer and method != "zeroshot":
        raise PlanError(f"TRAINER={opts.trainer} only applies to zeroshot; {method} always "
                        f"runs {trainer}")
    if method == "zeroshot":
        if opts.trainer and opts.trainer not in layout.ZEROSHOT_TRAINERS:
            raise PlanError(f"TRAINER={opts.trainer}: zeroshot runs one of "
                            f"{', '.join(layout.ZEROSHOT_TRAINERS)}")
        return opts.trainer or trainer, opts.cfg or "rn50", "", flags, overrides
    if method == "taskres":
        cfg = opts.cfg or _taskres_cfg(dataset, shots)
        overrides += ["TRAINER.TaskRes.RESIDUAL_SCALE", str(_taskres_alpha(dataset))]
        if _uses_enhanced_base(opts):
            flags += ["--enhanced-base", _enhanced_base_file(opts.enhanced_base, dataset, shots)]
            variant = "enhanced_base"
    else:  # coop, clip_adapter
        cfg = opts.cfg or _coop_schedule(dataset, shots)
        if method == "coop":
            variant = f"nctx{opts.n_ctx}_csc{opts.csc}_ctp{opts.ctp}"
            overrides += ["TRAINER.COOP.N_CTX", str(opts.n_ctx), "TRAINER.COOP.CSC",
                          str(opts.csc), "TRAINER.COOP.CLASS_TOKEN_POSITION", opts.ctp]
    overrides += ["DATASET.NUM_SHOTS", str(shots)]
    return trainer, cfg, variant, flags, overrides


# ---------------------------------------------------------------- files and checks

def _shown(path):
    """Paths below the working folder stay relative (as in the reference logs)."""
    rel = osp.relpath(path)
    return path if rel.startswith("..") else rel


def _config_stems(folder):
    if not osp.isdir(folder):
        return [f"none ({_shown(folder)} is missing)"]
    return sorted(n[:-5] for n in os.listdir(folder) if n.endswith(".yaml"))


def dataset_config(dataset):
    path = osp.join(REPO_ROOT, "configs", "datasets", f"{dataset}.yaml")
    if not osp.isfile(path):
        raise PlanError(f"unknown dataset '{dataset}': no {_shown(path)}. Datasets: "
                        f"{', '.join(_config_stems(osp.dirname(path)))}")
    return path


def method_config(method, cfg):
    """configs/trainers/<Trainer>/<cfg>.yaml; ZeroshotCLIP2 shares ZeroshotCLIP's configs."""
    trainer = METHODS[method].trainer
    path = osp.join(REPO_ROOT, "configs", "trainers", trainer, f"{cfg}.yaml")
    if not osp.isfile(path):
        raise PlanError(f"no config '{cfg}' for {trainer}: {_shown(path)} is missing. Configs: "
                        f"{', '.join(_config_stems(osp.dirname(path)))}")
    return path


def dataset_class_name(dataset):
    """DATASET.NAME of a dataset stem, read from its config (e.g. dtd -> DescribableTextures)."""
    with open(dataset_config(dataset)) as f:
        return yaml.safe_load(f)["DATASET"]["NAME"]


def _enhanced_base_file(value, dataset, shots):
    """A file is used as given; a folder is read in the reference strong_base layout
    `<folder>/<DatasetName>/rn50_<K>shots/model.pth.tar`."""
    path = value
    if osp.isdir(value):
        path = osp.join(value, dataset_class_name(dataset), f"rn50_{shots}shots", "model.pth.tar")
    if not osp.isfile(path):
        raise PlanError(f"ENHANCED_BASE={value}: no weights file {path} (give a file, a "
                        f"strong_base/ folder laid out <DatasetName>/rn50_<K>shots/"
                        f"model.pth.tar, or none)")
    return path


def data_root(root):
    """The dataset root: --root, else the DATA environment variable; it must exist."""
    root = root or os.environ.get("DATA", "")
    if not root:
        raise PlanError("no dataset root: set DATA=/path/to/datasets (the folder holding "
                        "imagenet/, dtd/, ...; see DATASETS.md)")
    if not osp.isdir(root):
        raise PlanError(f"DATA={root} is not a folder: point DATA at the folder holding the "
                        f"dataset folders (imagenet/, dtd/, ...)")
    return root


def _check_shots(method, shots):
    if METHODS[method].eval_only:
        if shots != layout.ZEROSHOT_SHOTS:
            raise PlanError(f"{method} uses no shots: pass {layout.ZEROSHOT_SHOTS}, not {shots}")
    elif shots < 1:
        raise PlanError(f"SHOTS must be a positive number of images per class, not {shots}")


def _check_method(method):
    if method not in METHODS:
        raise PlanError(f"unknown method '{method}': choose one of {', '.join(METHODS)}")


# ---------------------------------------------------------------- planning

def _train_py_args(root, seed, trainer, dataset, cfg_file, out, flags, overrides, extra):
    args = ["--root", root]
    if seed is not None:
        args += ["--seed", str(seed)]
    return args + ["--trainer", trainer, "--dataset-config-file",
                   _shown(dataset_config(dataset)), "--config-file", _shown(cfg_file),
                   "--output-dir", out, *flags, *overrides, *extra]


def plan_runs(method, dataset, shots, seeds=SEEDS, output="output", root=None,
              opts=Options()):
    """The runs of `method` on `dataset` with `shots` shots: one per seed (training), or one
    seedless evaluation for zeroshot."""
    _check_method(method)
    _check_shots(method, shots)
    root = data_root(root)
    dataset_config(dataset)
    trainer, cfg, variant, flags, overrides = _method_choice(method, dataset, shots, opts)
    cfg_file = method_config(method, cfg)
    eval_only = METHODS[method].eval_only
    if eval_only:
        flags = flags + ["--eval-only"]
    runs = []
    for seed in ([None] if eval_only else list(dict.fromkeys(seeds))):
        out = layout.run_dir(output, dataset, trainer, cfg, shots, seed, variant)
        args = _train_py_args(root, seed, trainer, dataset, cfg_file, out, flags, overrides,
                              opts.extra)
        runs.append(Run(method, trainer, dataset, shots, seed, cfg, variant, out, args,
                        eval_only))
    return runs


def trained_epochs(run_dir):
    """The epoch of a finished run's final checkpoint (its result record's `epochs`)."""
    record = osp.join(run_dir, layout.RESULT_FILE)
    if not osp.isfile(record):
        raise PlanError(f"{run_dir} has not finished training (no {layout.RESULT_FILE}); "
                        f"train it first (scripts/<method>/main.sh)")
    with open(record) as f:
        epochs = json.load(f).get("epochs")
    if not isinstance(epochs, int) or epochs < 1:
        raise PlanError(f"{record} holds no 'epochs' to load the final checkpoint of")
    return epochs


def plan_eval_runs(method, source, shots, targets, tree, seeds=SEEDS, output="output",
                   root=None, opts=Options()):
    """Tests of the finished `source` runs on each target dataset, written to
    `<output>/<tree>/<target>/...` (tree: `eval` or `dg`). The models keep their training
    settings (config, alpha, variant, overrides); only the dataset config changes."""
    _check_method(method)
    if METHODS[method].eval_only:
        raise PlanError(f"{method} trains nothing to evaluate; use scripts/zeroshot.sh")
    if tree not in (layout.EVAL_DIR, layout.DG_DIR):
        raise PlanError(f"tree must be {layout.EVAL_DIR} or {layout.DG_DIR}, not {tree}")
    _check_shots(method, shots)
    root = data_root(root)
    for dataset in [source, *targets]:
        dataset_config(dataset)
    trainer, cfg, variant, flags, overrides = _method_choice(method, source, shots, opts)
    cfg_file = method_config(method, cfg)
    runs = []
    for seed in dict.fromkeys(seeds):
        model_dir = layout.run_dir(output, source, trainer, cfg, shots, seed, variant)
        load = ["--eval-only", "--model-dir", model_dir,
                "--load-epoch", str(trained_epochs(model_dir))]
        for target in targets:
            out = layout.run_dir(osp.join(output, tree), target, trainer, cfg, shots, seed,
                                 variant)
            args = _train_py_args(root, seed, trainer, target, cfg_file, out, flags + load,
                                  overrides, opts.extra)
            runs.append(Run(method, trainer, target, shots, seed, cfg, variant, out, args,
                            True))
    return runs


def grid(method, datasets=BENCHMARKS, shots=SHOTS):
    """(dataset, shots) pairs of a sweep: every dataset x shot count (zeroshot: no shots)."""
    _check_method(method)
    if METHODS[method].eval_only:
        return [(d, layout.ZEROSHOT_SHOTS) for d in datasets]
    return [(d, k) for d in datasets for k in shots]


def archive(run_dir):
    """Move a run folder aside (never delete it): `<dir>.replaced-<time>`; returns the name."""
    if not osp.isdir(run_dir):
        raise PlanError(f"{run_dir} is not a folder")
    base = f"{run_dir.rstrip(os.sep)}{layout.ARCHIVE_MARK}{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = base, 1
    while osp.exists(target):
        target, n = f"{base}-{n}", n + 1
    os.rename(run_dir, target)
    return target


# ---------------------------------------------------------------- command line

def _shell_line(run):
    return " ".join(shlex.quote(x) for x in [run.status, run.output_dir, *run.args])


def _print_runs(runs, fmt):
    if fmt == "json":
        print(json.dumps([dict(asdict(r), status=r.status) for r in runs], indent=2))
    else:
        for run in runs:
            print(_shell_line(run))


def parse_bool(text):
    """argparse type for True/False flags (shared with the sweep launcher)."""
    if text in ("True", "true", "1"):
        return True
    if text in ("False", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, not {text}")


def _add_run_options(p):
    p.add_argument("method", help=", ".join(METHODS))
    p.add_argument("dataset", help="dataset config stem, e.g. dtd")
    p.add_argument("shots", type=int, help="shots per class (zeroshot: 0)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--output", default="output", help="output root (default: output)")
    p.add_argument("--root", default="", help="dataset root (default: $DATA)")
    p.add_argument("--cfg", default="", help="config file name instead of the official choice")
    p.add_argument("--trainer", default="", help="zeroshot: ZeroshotCLIP or ZeroshotCLIP2")
    p.add_argument("--enhanced-base", default="", help="taskres: weights file or strong_base/")
    p.add_argument("--nctx", type=int, default=16, help="coop: context length")
    p.add_argument("--csc", type=parse_bool, default=False, help="coop: class-specific context")
    p.add_argument("--ctp", default="end", choices=("end", "middle", "front"),
                   help="coop: class token position")
    p.add_argument("--format", choices=("shell", "json"), default="shell")


def _options(args, extra):
    if len(extra) % 2:
        raise PlanError(f"overrides come in KEY VALUE pairs; got an odd list: {extra}")
    return Options(args.cfg, args.trainer, args.enhanced_base, args.nctx, args.csc, args.ctp,
                   tuple(extra))


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m fewshot_grid.plan",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run_options(sub.add_parser("runs", help="the runs of one method/dataset/shots"))
    ev = sub.add_parser("eval", help="tests of trained runs on target datasets")
    ev.add_argument("--targets", nargs="+", required=True, help="dataset config stems")
    ev.add_argument("--tree", choices=(layout.EVAL_DIR, layout.DG_DIR), default=layout.EVAL_DIR)
    _add_run_options(ev)
    gr = sub.add_parser("grid", help="dataset/shots pairs of a sweep, one pair per line")
    gr.add_argument("method")
    gr.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    gr.add_argument("--shots", type=int, nargs="+", default=list(SHOTS))
    ar = sub.add_parser("archive", help="move a run folder aside; prints the new name")
    ar.add_argument("run_dir")
    return parser


def main(argv=None):
    """Everything after the first `--` is the runs' KEY VALUE overrides."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = build_parser()
    parser.epilog = "Put KEY VALUE overrides for train.py after --."
    args = parser.parse_args(argv)
    if extra and args.command not in ("runs", "eval"):
        parser.error(f"{args.command} takes no overrides after --")
    try:
        if args.command == "grid":
            for dataset, shots in grid(args.method, args.datasets, args.shots):
                print(dataset, shots)
        elif args.command == "archive":
            print(archive(args.run_dir))
        elif args.command == "runs":
            _print_runs(plan_runs(args.method, args.dataset, args.shots, args.seeds,
                                  args.output, args.root, _options(args, extra)), args.format)
        else:
            _print_runs(plan_eval_runs(args.method, args.dataset, args.shots, args.targets,
                                       args.tree, args.seeds, args.output, args.root,
                                       _options(args, extra)), args.format)
    except PlanError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
