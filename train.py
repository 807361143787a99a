"""Train or evaluate a few-shot CLIP method (the reference `train.py` interface).

Config merge order: defaults (+ the CLIP keys of trainers/config.py) -> --dataset-config-file
-> --config-file -> flags -> trailing KEY VALUE overrides.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
import tempfile

import torch

from dassl.config import get_cfg_default, merge_from_file, merge_from_list
from dassl.config.checks import check_run_settings
from dassl.config.merge import ConfigError
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import RESULT_FILE, TRAINER_REGISTRY, build_trainer
from dassl.engine.protocol import ORACLE
from dassl.utils import collect_env_info, read_json, set_random_seed, setup_logger
from dassl.utils.errors import CheckpointError, OutputDirError, run_cli
from dassl.utils.threads import oversubscription_warning

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers)
from trainers.common.experiment import resolve_protocol
from trainers.config import extend_cfg


def reset_cfg(cfg, args):
    """Flags override the config files (only those given on the command line)."""
    flag_to_key = [
        ("root", "DATASET.ROOT"), ("output_dir", "OUTPUT_DIR"), ("resume", "RESUME"), ("seed", "SEED"),
        ("source_domains", "DATASET.SOURCE_DOMAINS"), ("target_domains", "DATASET.TARGET_DOMAINS"),
        ("transforms", "INPUT.TRANSFORMS"), ("trainer", "TRAINER.NAME"), ("backbone", "MODEL.BACKBONE.NAME"),
        ("head", "MODEL.HEAD.NAME"), ("enhanced_base", "TRAINER.TaskRes.ENHANCED_BASE"),
    ]
    for flag, key in flag_to_key:
        value = getattr(args, flag)
        if value is None or value == "":
            continue
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = tuple(value) if isinstance(value, list) else value


def load_plugins(paths):
    """Import user files that register their own trainers/datasets (no edit of this repo needed).

    A plugin may define `extend_cfg(cfg)` to add its config keys."""
    plugins = []
    for path in paths or []:
        if not osp.isfile(path):
            raise ConfigError(f'--plugin file not found: "{path}"')
        name = "plugin_" + osp.splitext(osp.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None:
            raise ConfigError(f'--plugin "{path}" is not a Python file (it must end in .py)')
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        plugins.append(module)
    return plugins


def setup_cfg(args, plugins=()):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    for plugin in plugins:
        if hasattr(plugin, "extend_cfg"):
            plugin.extend_cfg(cfg)
    if args.dataset_config_file:
        merge_from_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_from_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_from_list(cfg, args.opts)
    cfg.freeze()
    return cfg


def print_args(args, cfg):
    print("***************")
    print("** Arguments **")
    print("***************")
    for key in sorted(args.__dict__):
        print(f"{key}: {args.__dict__[key]}")
    print("************")
    print("** Config **")
    print("************")
    print(cfg)


def check_registered(cfg):
    for key, registry, what in (("TRAINER.NAME", TRAINER_REGISTRY, "--trainer"),
                                ("DATASET.NAME", DATASET_REGISTRY, "--dataset-config-file")):
        name = cfg.TRAINER.NAME if key == "TRAINER.NAME" else cfg.DATASET.NAME
        if name and name not in registry:
            raise ConfigError(f'{key} "{name}" is not registered ({what}); known: '
                              f"{', '.join(registry.registered_names())}. Check the spelling, or load your own "
                              "with --plugin FILE.py.")
    if not cfg.TRAINER.NAME:
        raise ConfigError("TRAINER.NAME is empty: pass --trainer NAME (e.g. TaskRes, CoOp, CLIP_Adapter, ZeroshotCLIP).")


def check_folders(cfg, args):
    """Folders named on the command line: they must exist, and an evaluation must not write
    into a training run's folder (it would replace that run's result.json)."""
    if args.resume and args.eval_only:
        raise ConfigError("--resume continues training; it does not apply with --eval-only (use --model-dir).")
    if (args.model_dir or args.load_epoch is not None) and not args.eval_only:
        raise ConfigError("--model-dir and --load-epoch select a model to evaluate; add --eval-only (to resume "
                          "training, use --resume DIR).")
    if args.model_dir and not osp.isdir(args.model_dir):
        raise CheckpointError(f'--model-dir "{args.model_dir}" does not exist; point it at the output folder of a '
                              "finished training run.")
    if args.resume and not osp.isdir(args.resume):
        raise CheckpointError(f'--resume "{args.resume}" does not exist; point it at the output folder of an '
                              "interrupted run, or drop --resume to train from scratch.")
    if not args.eval_only:
        return
    out = cfg.OUTPUT_DIR
    if args.model_dir and osp.realpath(out) == osp.realpath(args.model_dir):
        raise OutputDirError(f'--output-dir "{out}" is the training run\'s folder (--model-dir): the evaluation '
                             f"would replace its {RESULT_FILE}. Pass another --output-dir, e.g. {osp.join(out, 'eval')}.")
    if args.model_dir:
        check_class_split(cfg, args.model_dir)
    existing = osp.join(out, RESULT_FILE)
    if osp.isfile(existing) and not _is_eval_record(existing):
        raise OutputDirError(f'--output-dir "{out}" holds the {RESULT_FILE} of a training run, which the evaluation '
                             "would replace. Pass another --output-dir.")


def check_class_split(cfg, model_dir):
    """A model tested on its own dataset must be tested on the classes the base-to-new protocol
    allows: a model trained on all classes has no new classes (its "new" half was trained on),
    and a model trained on one half is tested on a half, not on all classes."""
    try:
        record = read_json(osp.join(model_dir, RESULT_FILE))
        trained = record.get("subsample_classes")
    except (OSError, ValueError, AttributeError):
        return  # unfinished or older runs: nothing recorded to check against
    testing = cfg.DATASET.SUBSAMPLE_CLASSES
    if trained is None or record.get("dataset") != cfg.DATASET.NAME or (trained == "all") == (testing == "all"):
        return
    if trained == "all":
        raise ConfigError(
            f'--model-dir "{model_dir}" was trained on all classes of {cfg.DATASET.NAME} (DATASET.SUBSAMPLE_CLASSES '
            f"all), so its {testing} classes were seen in training and DATASET.SUBSAMPLE_CLASSES {testing} would "
            f"not test generalisation. For base-to-new, train on the base classes (bash scripts/base2new.sh METHOD "
            f"DATASET), or test this model with DATASET.SUBSAMPLE_CLASSES all.")
    raise ConfigError(
        f'--model-dir "{model_dir}" was trained on the {trained} classes of {cfg.DATASET.NAME} only '
        f"(DATASET.SUBSAMPLE_CLASSES {trained}); testing it on all classes mixes seen and unseen ones. Test it "
        f"with DATASET.SUBSAMPLE_CLASSES base or new.")


def _is_eval_record(path):
    try:
        return bool(read_json(path).get("eval_only"))
    except (OSError, ValueError, AttributeError):
        return False


def prepare_output_dir(path):
    """Create the output folder and prove it takes files, before any work is done."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise OutputDirError(f'Cannot write to the output folder "{path}" (OUTPUT_DIR / --output-dir): '
                             f"{e.strerror or e}. Choose a writable folder with free space.") from e


def main(args):
    cfg = setup_cfg(args, load_plugins(args.plugin))
    check_registered(cfg)
    trainer_class = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    trains = getattr(trainer_class, "trains", True) and not args.eval_only and not args.no_train
    check_run_settings(cfg, trains)
    cfg.defrost()
    cfg.PROTOCOL = resolve_protocol(cfg.TRAINER.NAME, cfg.PROTOCOL, cfg.TEST.FINAL_MODEL)
    cfg.freeze()
    if cfg.PROTOCOL == ORACLE:
        print("!! PROTOCOL oracle: this run may select on the TEST split (to reproduce official code). "
              "Its accuracy is not a fair estimate and is never ranked with other protocols.")
    check_folders(cfg, args)
    prepare_output_dir(cfg.OUTPUT_DIR)
    setup_logger(cfg.OUTPUT_DIR)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")
    warning = oversubscription_warning()
    if warning:
        print(warning)

    trainer = build_trainer(cfg)
    trainer.run_record["subsample_classes"] = cfg.DATASET.SUBSAMPLE_CLASSES  # checked when a test loads it
    if args.eval_only:
        if not args.model_dir and trainer.get_model_names():
            print(f"WARNING: --eval-only without --model-dir: evaluating the untrained "
                  f"{', '.join(trainer.get_model_names())} as initialised")
        trainer.run_record["eval_only"] = True
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.final_test()
        return
    if not args.no_train:
        trainer.train()


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument("--resume", type=str, default="", help="checkpoint directory (from which the training resumes)")
    parser.add_argument("--seed", type=int, default=None, help="only non-negative value enables a fixed seed")
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument("--dataset-config-file", type=str, default="", help="path to config file for dataset setup")
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument("--model-dir", type=str, default="", help="load model from this directory for eval-only mode")
    parser.add_argument("--load-epoch", type=int, help="load model weights at this epoch for evaluation")
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument("--enhanced-base", type=str, default="",
                        help="TaskRes: enhanced base weights file, or none (TRAINER.TaskRes.ENHANCED_BASE)")
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                        help="import this file first (registers your own trainer or dataset); repeatable")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                        help="modify config options using the command-line")
    return parser


if __name__ == "__main__":
    run_cli(main, build_parser().parse_args())
