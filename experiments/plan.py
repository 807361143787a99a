"""Expand (method, dataset, shots, seeds) into train.py runs from the method's declaration; the
scripts, the launchers and the demo all plan here, so they make the same runs. `settings`: the
user's CFG, TRAINER and the method's declared options (e.g. NCTX, ENHANCED_BASE) by name."""
import json
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dassl.utils.errors import UserError
from trainers.common.experiment import config_file_stem, load_methods

from . import layout
from .benchmarks import BENCHMARKS, DG_TARGETS, SEEDS, SHOTS

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
COMMON_SETTINGS = ("CFG", "TRAINER", "PROTOCOL")
# The fast pipeline (FAST=1, --fast): an override, so it is part of the run's recorded request.
FAST_OVERRIDES = ["TRAIN.FEATURE_CACHE.PIPELINE", "fast"]
PlanError = UserError  # a run that cannot be planned (unknown dataset, missing config, ...)


@dataclass(frozen=True)
class Run:
    method: str
    trainer: str
    dataset: str  # config stem of the dataset the run uses
    shots: int
    seed: Optional[int]  # None: seedless (evaluation-only method)
    cfg: str
    variant: str
    output_dir: str
    args: List[str] = field(default_factory=list)  # train.py arguments
    eval_only: bool = False

    def request(self):
        """What this run is, as recorded in its result.json and compared before a finished
        run is reused: everything but where the data and the outputs live."""
        args, skip = [], {"--root", "--output-dir", "--dataset-config-file", "--config-file"}
        it = iter(self.args)
        for arg in it:
            if arg in skip:
                next(it)
            elif arg in ("--enhanced-base", "--model-dir", "--plugin"):
                args += [arg, osp.abspath(next(it))]
            else:
                args.append(arg)
        return dict(method=self.method, trainer=self.trainer, dataset=self.dataset,
                    shots=self.shots, seed=self.seed, cfg=self.cfg, variant=self.variant,
                    args=args)


def get_method(name, plugins=()):
    methods = load_methods(plugins)
    if name not in methods:
        raise UserError(f"unknown method '{name}': choose one of {', '.join(methods)} (or "
                        f"declare it in a plugin file: --plugin FILE.py or PLUGINS=FILE.py)")
    return methods[name]


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
        raise UserError(f"unknown dataset '{dataset}': no {_shown(path)}. Datasets: "
                        f"{', '.join(_config_stems(osp.dirname(path)))}")
    return path


def data_root(root):
    """The dataset root: --root, else the DATA environment variable; it must exist."""
    root = root or os.environ.get("DATA", "")
    if not root:
        raise UserError("no dataset root: set DATA=/path/to/datasets (the folder holding "
                        "imagenet/, dtd/, ...; see DATASETS.md)")
    if not osp.isdir(root):
        raise UserError(f"DATA={root} is not a folder: point DATA at the folder holding the "
                        f"dataset folders (imagenet/, dtd/, ...)")
    return root


def option_values(method, settings):
    """The method's option values: the user's settings over the declared defaults."""
    unknown = [k for k in settings if k not in method.options and k not in COMMON_SETTINGS]
    if unknown:
        own = ", ".join(method.options) or "none"
        raise UserError(f"{', '.join(unknown)} does not apply to {method.name} (its options: "
                        f"{own}; every method: {', '.join(COMMON_SETTINGS)})")
    values = {}
    for name, option in method.options.items():
        value = str(settings.get(name, option.default))
        try:
            value = option.normalize(value)
        except ValueError as error:
            raise UserError(f"{name}={value}: {error}")
        if option.choices and value not in option.choices:
            raise UserError(f"{name}={value}: choose one of {', '.join(option.choices)}")
        values[name] = value
    return values


def _choice(method, dataset, shots, settings):
    """(trainer, cfg, variant, train.py flags, config overrides) of one method."""
    trainer = settings.get("TRAINER", "") or method.trainer
    if trainer not in method.trainers:
        raise UserError(f"TRAINER={trainer}: {method.name} runs {' or '.join(method.trainers)}")
    values = option_values(method, settings)
    flags, overrides = [], list(method.overrides(dataset, shots))
    for name, option in method.options.items():
        if values[name] in option.unset:
            continue
        try:
            value = option.resolve(values[name], dataset, shots)
        except ValueError as error:
            raise UserError(str(error))
        (flags if option.key.startswith("--") else overrides).extend([option.key, value])
    if method.plugin:
        flags += ["--plugin", method.plugin]
    if method.trains:
        overrides += ["DATASET.NUM_SHOTS", str(shots)]
    variant = method.variant(values) if method.variant else ""
    protocol = settings.get("PROTOCOL", "")
    if protocol:
        overrides += ["PROTOCOL", checked_protocol(method, protocol)]
        if protocol != method.protocols[0]:  # the default keeps the reference layout
            variant = f"{variant}_{protocol}" if variant else protocol
    cfg = settings.get("CFG", "")
    if not cfg:  # the method's choice, adjusted by options that pick the config (BACKBONE)
        cfg = method.config(dataset, shots)
        for name, option in method.options.items():
            if option.config_stem is not None:
                cfg = option.config_stem(values[name], cfg)
    return trainer, cfg, variant, flags, overrides


def checked_protocol(method, protocol):
    """PROTOCOL=... for a method: one it declares, or fsval/fullval (with the engine's best-epoch
    selection, TEST.FINAL_MODEL best_val); train.py checks the combination again."""
    from dassl.engine.protocol import PROTOCOLS
    if protocol not in PROTOCOLS:
        raise UserError(f"PROTOCOL={protocol}: choose one of {', '.join(PROTOCOLS)}")
    if protocol not in method.protocols and protocol not in ("fsval", "fullval"):
        raise UserError(f"PROTOCOL={protocol}: {method.name} supports {', '.join(method.protocols)} "
                        f"(default {method.protocols[0]})")
    return protocol


def _prepare(name, datasets, shots, root, settings, extra, plugins):
    """Check a request; (method, trainer, cfg, variant, its train.py arguments for a seed, a
    dataset, an output folder and more flags)."""
    method = get_method(name, plugins)
    if not method.trains and shots != layout.ZEROSHOT_SHOTS:
        raise UserError(f"{method.name} uses no shots: pass {layout.ZEROSHOT_SHOTS}, not {shots}")
    if method.trains and shots < 1:
        raise UserError(f"SHOTS must be a positive number of images per class, not {shots}")
    if len(extra) % 2:
        raise UserError(f"overrides come in KEY VALUE pairs; got an odd list: {list(extra)}")
    root = data_root(root)
    for dataset in datasets:
        dataset_config(dataset)
    trainer, cfg, variant, flags, overrides = _choice(method, datasets[0], shots, settings or {})
    cfg_file = None  # a method without config files
    if method.config_dir is not None:  # alternative trainers share the method's configs
        folder = osp.join(REPO_ROOT, method.config_dir or osp.join("configs", "trainers",
                                                                   method.trainer))
        cfg_file = osp.join(folder, f"{config_file_stem(cfg)}.yaml")  # open_clip: <backbone>@<stem>
        if not osp.isfile(cfg_file):
            raise UserError(f"no config '{cfg}' for {method.trainer}: {_shown(cfg_file)} is "
                            f"missing. Configs: {', '.join(_config_stems(folder))}")

    def train_py_args(seed, dataset, out, more_flags):
        args = ["--root", root] + ([] if seed is None else ["--seed", str(seed)])
        args += ["--trainer", trainer, "--dataset-config-file", _shown(dataset_config(dataset))]
        if cfg_file is not None:
            args += ["--config-file", _shown(cfg_file)]
        return args + ["--output-dir", out, *flags, *more_flags, *overrides, *extra]

    return method, trainer, cfg, variant, train_py_args


def plan_runs(method, dataset, shots, seeds=SEEDS, output="output", root=None,
              settings=None, extra=(), plugins=()):
    """One run per seed of `method` on `dataset` (an evaluation-only method: one seedless run)."""
    method, trainer, cfg, variant, train_py_args = _prepare(method, [dataset], shots, root,
                                                            settings, extra, plugins)
    more_flags = [] if method.trains else ["--eval-only"]
    runs = []
    for seed in (list(dict.fromkeys(seeds)) if method.trains else [None]):
        out = layout.run_dir(output, dataset, trainer, cfg, shots, seed, variant)
        runs.append(Run(method.name, trainer, dataset, shots, seed, cfg, variant, out,
                        train_py_args(seed, dataset, out, more_flags), not method.trains))
    return runs


def plan_eval_runs(method, source, shots, targets, tree, seeds=SEEDS, output="output",
                   root=None, settings=None, extra=(), plugins=(), source_output=None,
                   train_first="scripts/<method>/main.sh", finished_only=False):
    """Tests of the finished `source` runs (below `source_output`, default `output`) on each
    target, into `<output>/<tree>/<target>/...` (tree: eval, dg or xd), with their training
    settings; only the dataset config changes. A seed not trained yet is an error naming
    `train_first`, or left out with `finished_only`."""
    if not get_method(method, plugins).trains:
        raise UserError(f"{method} trains nothing to evaluate; run it directly")
    method, trainer, cfg, variant, train_py_args = _prepare(method, [source, *targets], shots,
                                                            root, settings, extra, plugins)
    runs = []
    for seed in dict.fromkeys(seeds):
        model_dir = layout.run_dir(source_output or output, source, trainer, cfg, shots, seed, variant)
        record = osp.join(model_dir, layout.RESULT_FILE)
        if not osp.isfile(record) and finished_only:
            continue
        if not osp.isfile(record):
            raise UserError(f"{model_dir} has not finished training (no {layout.RESULT_FILE}); "
                            f"train it first ({train_first})")
        with open(record) as f:
            epochs = json.load(f).get("epochs")  # the final checkpoint's epoch
        if not isinstance(epochs, int) or epochs < 1:
            raise UserError(f"{record} holds no 'epochs' to load the final checkpoint of")
        load = ["--eval-only", "--model-dir", model_dir, "--load-epoch", str(epochs)]
        for target in targets:
            out = layout.run_dir(osp.join(output, tree), target, trainer, cfg, shots, seed, variant)
            runs.append(Run(method.name, trainer, target, shots, seed, cfg, variant, out,
                            train_py_args(seed, target, out, load), True))
    return runs


SPLIT_KEY = "DATASET.SUBSAMPLE_CLASSES"
BASE2NEW_SHOTS = 16


def _check_base2new(method, dataset, extra):
    """Refuse what base-to-new cannot run, before anything runs."""
    if not method.new_classes:
        able = ", ".join(m.name for m in load_methods().values() if m.new_classes)
        raise UserError(f"{method.name} learns weights for each training class, so a model trained on the base "
                        f"classes cannot classify the new ones; base-to-new runs: {able}")
    if dataset in DG_TARGETS:
        raise UserError(f"{dataset} is a test-only dataset (one of ImageNet's shifted test sets): it has no "
                        f"training images to split into base and new classes. Base-to-new runs on the 11 "
                        f"benchmarks ({', '.join(BENCHMARKS)}); test ImageNet models on it with scripts/dg.sh")
    if SPLIT_KEY in extra[::2]:
        raise UserError(f"{SPLIT_KEY} is set by base-to-new itself (base for training, new for the test); "
                        f"drop it from the overrides")


def plan_base2new_runs(method, dataset, stage, shots=BASE2NEW_SHOTS, seeds=SEEDS, output="output",
                       root=None, settings=None, extra=(), plugins=(), finished_only=False):
    """Base-to-new, into `<output>/base2new/`: stage "train" trains one run per seed on the base
    classes (its own test is on the base classes) into train_base/; stage "test" tests each of
    those models on the new classes into test_new/. An evaluation-only method runs on each
    half directly. `finished_only`: leave out the tests of seeds not trained yet."""
    declared = get_method(method, plugins)
    _check_base2new(declared, dataset, tuple(extra))
    tree = osp.join(output, layout.BASE2NEW_DIR)
    train_root = osp.join(tree, layout.TRAIN_BASE_DIR)
    if stage == "train" or not declared.trains:
        half, where = ("base", train_root) if stage == "train" else ("new", osp.join(tree, layout.TEST_NEW_DIR))
        return plan_runs(method, dataset, shots if declared.trains else layout.ZEROSHOT_SHOTS, seeds, where,
                         root, settings, (*extra, SPLIT_KEY, half), plugins)
    return plan_eval_runs(method, dataset, shots, [dataset], layout.TEST_NEW_DIR, seeds, tree, root, settings,
                          (*extra, SPLIT_KEY, "new"), plugins, source_output=train_root,
                          train_first=f"bash scripts/base2new.sh {method} {dataset}",
                          finished_only=finished_only)


def plan_transfer_runs(method, source, targets, tree, shots, seeds=SEEDS, output="output", root=None,
                       settings=None, extra=(), plugins=()):
    """The finished `source` models tested on `targets` into `<output>/<tree>/` (dg, xd); an
    evaluation-only method runs on each target directly."""
    if get_method(method, plugins).trains:
        return plan_eval_runs(method, source, shots, list(targets), tree, seeds, output, root, settings,
                              extra, plugins)
    return [run for target in targets for run in plan_runs(
        method, target, layout.ZEROSHOT_SHOTS, seeds, osp.join(output, tree), root, settings, extra, plugins)]


def grid(method, datasets=BENCHMARKS, shots=SHOTS, plugins=()):
    """(dataset, shots) pairs of a sweep (an evaluation-only method: no shots)."""
    if not get_method(method, plugins).trains:
        return [(d, layout.ZEROSHOT_SHOTS) for d in datasets]
    return [(d, k) for d in datasets for k in shots]


def archive(run_dir):
    """Move a run folder aside (never delete it): `<dir>.replaced-<time>`; returns the name."""
    if not osp.isdir(run_dir):
        raise UserError(f"{run_dir} is not a folder")
    base = f"{run_dir.rstrip(os.sep)}{layout.ARCHIVE_MARK}{time.strftime('%Y%m%d-%H%M%S')}"
    target, n = base, 1
    while osp.exists(target):
        target, n = f"{base}-{n}", n + 1
    os.rename(run_dir, target)
    return target


def method_settings(method, settings):
    """The settings that apply to `method`: CFG, TRAINER (when it has alternatives) and its
    options; e.g. NCTX applies to CoOp only. Empty values count as not given."""
    names = ["CFG", "PROTOCOL", *(["TRAINER"] if method.alternatives else []), *method.options]
    return {name: settings[name] for name in names if settings.get(name, "") != ""}


def settings_from_pairs(pairs, flag="--option", example="NCTX=4"):
    """`NAME=VALUE` items (the launcher's --option, --slurm-extra) -> {NAME: VALUE}."""
    settings: Dict[str, str] = {}
    for item in pairs or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"{flag} {item!r}: expected NAME=VALUE, e.g. {example}")
        settings[name] = value
    return settings
