"""Make the "enhanced base" of TaskRes*: CLIP's text projection tuned on a dataset's K-shot
training set, written where and how `--enhanced-base` reads it.

    python -m trainers.enhanced_base --dataset-config-file configs/datasets/oxford_pets.yaml \
        --root $DATA --shots 16 --seed 1 --backbone RN50 [--epochs 50] --output strong_base [KEY VALUE ...]

writes `strong_base/<DatasetName>/rn50_<K>shots/model.pth.tar` with `state_dict["weight"]`
([D, text width], the transposed projection, the layout of the authors' files) and `meta`
(backbone, dataset, shots, seed, epochs), which TaskRes checks when it loads the file. The
training run (log, checkpoints, result.json on the test split) is kept under
`<output>/runs/<DatasetName>/<backbone>_<K>shots_ep<E>/seed<S>/`; a finished run is reused.
Other backbones use their own folder name (`vit_b16_<K>shots`, ...).

The paper says only that the text projection is tuned on the few-shot data for 50 epochs. The
choices left open, and ours (trainer TextProjectionTuning, configs/trainers/TextProjectionTuning):
- what is tuned: the text projection alone, on fixed text-tower outputs of TaskRes' own base
  prompts (so with the released projection the classifier is exactly TaskRes' base);
- loss and logits: cross-entropy on CLIP's cosine logits with its logit scale;
- data: the same K-shot subset of the given seed as every method, with TaskRes' augmentation
  (random resized crop, flip) and batch 256; the authors' files have one base per dataset and
  shot count, ours records the seed it was tuned on;
- optimiser: Adam, lr 1e-4, no weight decay, cosine decay after one constant warmup epoch at
  1e-5; no model selection (the last epoch is written; nothing is chosen on test).
KEY VALUE pairs after the options override the config as in train.py (e.g. OPTIM.LR 5e-5).
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:  # train.py lives at the repository root
    sys.path.insert(0, REPO)

import train  # noqa: E402
from dassl.config.merge import ConfigError  # noqa: E402
from dassl.engine import RESULT_FILE  # noqa: E402
from dassl.utils import load_checkpoint, save_checkpoint  # noqa: E402
from dassl.utils.errors import UserError, run_cli  # noqa: E402
from trainers.common.experiment import OPEN_CLIP, open_clip_slug  # noqa: E402

DEFAULT_CONFIG = osp.join(REPO, "configs", "trainers", "TextProjectionTuning", "rn50.yaml")
MODULE = "text_projection"  # the trainer's registered module (its checkpoint folder)


def backbone_folder(backbone):
    """RN50 -> rn50 (the reference folder name), ViT-B/16 -> vit_b16, open_clip:ViT-B-16/laion2b_s34b_b88k
    -> openclip-ViT-B-16-laion2b-s34b-b88k."""
    if backbone.startswith(OPEN_CLIP):
        return open_clip_slug(backbone)
    return backbone.lower().replace("/", "").replace("-", "_")


def enhanced_base_path(output, dataset, backbone, shots):
    return osp.join(output, dataset, f"{backbone_folder(backbone)}_{shots}shots", "model.pth.tar")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-config-file", required=True, help="configs/datasets/<dataset>.yaml")
    parser.add_argument("--root", required=True, help="dataset root (DATASET.ROOT)")
    parser.add_argument("--shots", type=int, required=True, help="K, the shots per class")
    parser.add_argument("--seed", type=int, default=1, help="seed of the few-shot subset and training")
    parser.add_argument("--backbone", default="RN50", help="CLIP backbone (RN50 in the paper)")
    parser.add_argument("--epochs", type=int, default=50, help="training epochs (50 in the paper)")
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, help="trainer config")
    parser.add_argument("--output", default="strong_base", help="strong_base folder to write into")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.shots < 1 or args.epochs < 1:
        raise UserError(f"--shots {args.shots} --epochs {args.epochs}: both must be at least 1")
    train_argv = ["--root", args.root, "--seed", str(args.seed), "--trainer", "TextProjectionTuning",
                  "--config-file", args.config_file, "--dataset-config-file", args.dataset_config_file,
                  "--backbone", args.backbone, *args.opts,
                  "DATASET.NUM_SHOTS", str(args.shots), "OPTIM.MAX_EPOCH", str(args.epochs)]
    train_args = train.build_parser().parse_args(train_argv)
    cfg = train.setup_cfg(train_args)
    dataset, backbone = cfg.DATASET.NAME, cfg.MODEL.BACKBONE.NAME
    run_dir = osp.join(args.output, "runs", dataset, f"{backbone_folder(backbone)}_{args.shots}shots_ep{args.epochs}",
                       f"seed{args.seed}")
    if osp.isfile(osp.join(run_dir, RESULT_FILE)):
        print(f"Reusing the finished tuning run {run_dir}")
    else:
        train_args.output_dir = run_dir
        train.main(train_args)
    weight = load_checkpoint(osp.join(run_dir, MODULE, f"model.pth.tar-{args.epochs}"))["state_dict"]["weight"]
    meta = {"backbone": backbone, "dataset": dataset, "shots": args.shots, "seed": args.seed,
            "epochs": args.epochs, "made_by": "python -m trainers.enhanced_base", "training_run": run_dir}
    path = enhanced_base_path(args.output, dataset, backbone, args.shots)
    if osp.isfile(path):
        print(f"Replacing {path}")
    save_checkpoint({"state_dict": {"weight": weight.float().cpu()}, "epoch": args.epochs, "meta": meta},
                    osp.dirname(path), model_name=osp.basename(path))
    print(f"Enhanced base written to {path} (weight {tuple(weight.shape)}); train TaskRes* with "
          f"--enhanced-base {path} (or ENHANCED_BASE={args.output} for the scripts)")
    return path


if __name__ == "__main__":
    try:
        run_cli(main)
    except ConfigError as error:
        print(f"Config error: {error}", file=sys.stderr)
        sys.exit(2)
