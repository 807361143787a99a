"""Run the CLIP trainers on fixture datasets with a tiny real CLIP: through train.py as a
subprocess, or in-process through train.py's own config code (to inspect the trainer)."""
import os
import re

import clip
import torch

import train
from dassl.engine import build_trainer
from dassl.utils import read_json, set_random_seed
from tests.dataset_fixtures import fixture_counts, write_fixture
from tests.engine_helpers import REPO, run_train
from tests.tiny_clip import save_tiny_clip

# The tests run on CPU; on a CUDA machine fp16 stays fp16 (no fallback line, looser equality).
ON_CPU = not torch.cuda.is_available()
FP16_TOLERANCE = {} if ON_CPU else dict(rtol=2e-3, atol=2e-3)
LOSS_LINE = re.compile(r"epoch \[(\d+)/\d+\] batch \[(\d+)/(\d+)\].* loss [\d.]+ \(([\d.]+)\)")


def write_fixture_and_clip(root, name, arch="rn", **fixture_kwargs):
    """(DATASET.ROOT, tiny CLIP weights file) for dataset `name` under `root`."""
    data_root = os.path.join(str(root), "data")
    write_fixture(data_root, name, **fixture_kwargs)
    return data_root, save_tiny_clip(str(root), arch=arch, seed=0)


def fixture_world(root, name, n_classes, per_class):
    """{"root", "data_root", "clip_path", "counts"}: dataset `name` and a tiny CLIP under `root`."""
    data_root, clip_path = write_fixture_and_clip(root, name, n_classes=n_classes, per_class=per_class)
    return dict(root=root, data_root=data_root, clip_path=clip_path,
                counts=fixture_counts(name, n_classes=n_classes, per_class=per_class))


def trainer_args(trainer, config, data_root, clip_path, output_dir, dataset, *opts, flags=()):
    """train.py arguments: the shipped method config, shrunk to the tiny CLIP and fixture.
    `opts` are KEY VALUE overrides, `flags` extra --flags (they must precede the overrides)."""
    return [
        "--root", data_root, "--seed", "1", "--trainer", trainer, "--output-dir", str(output_dir),
        "--config-file", os.path.join(REPO, "configs", "trainers", config), *flags,
        "DATASET.NAME", dataset, "INPUT.SIZE", "(32, 32)", "MODEL.BACKBONE.PATH", clip_path,
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "DATALOADER.TEST.BATCH_SIZE", "16", "TRAIN.PRINT_FREQ", "1", *opts,
    ]


def run(args):
    """train.py as a subprocess; returns its stdout (raises with the output on failure)."""
    return run_train(args).stdout


def epoch_losses(stdout):
    """Mean training loss of every epoch (the running average printed on its last batch)."""
    losses = {}
    for epoch, batch, n_batches, avg in LOSS_LINE.findall(stdout):
        if batch == n_batches:
            losses[int(epoch)] = float(avg)
    return [losses[e] for e in sorted(losses)]


def result(output_dir):
    return read_json(os.path.join(str(output_dir), "result.json"))


def build_in_process(args, open_test=False):
    """The trainer train.py would build for `args` (same config code, same seeding).
    `open_test`: unseal the test split and build its loader at once (cached test features are
    read or encoded then), as the final evaluation does, for tests that inspect test batches;
    an --eval-only run opens it, as train.py's evaluation does."""
    cfg = train.setup_cfg(train.build_parser().parse_args(args))
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    trainer = build_trainer(cfg)
    if open_test or "--eval-only" in args:
        trainer.open_test_split()
        trainer.test_loader
    return trainer


def file_weights(clip_path):
    """The tiny CLIP weights as stored, in fp32 (fp16 -> fp32 is exact)."""
    return {k: v.float() for k, v in torch.load(clip_path).items()}


def model_folders(output_dir):
    """Folders of `output_dir` that hold a saved model (they carry a `checkpoint` pointer)."""
    return sorted(d for d in os.listdir(output_dir) if os.path.isfile(os.path.join(output_dir, d, "checkpoint")))


@torch.no_grad()
def encode_texts(clip_model, texts):
    """CLIP's own text features of `texts` (fp32), computed independently of the trainers."""
    device = clip_model.text_projection.device
    return clip_model.encode_text(clip_model.tokenize(texts).to(device)).float()
