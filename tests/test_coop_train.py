"""CoOp end to end: train.py subprocess on a fixture dataset with a tiny real CLIP.

The tiny ViT is used because its random image features differ between the fixture's
class colours (the tiny ResNet's are nearly identical), so there is something to learn.
"""
import math
import os

import pytest
import torch

from dassl.utils import load_checkpoint
from tests.clip_run_helpers import (build_in_process, epoch_losses, file_weights, model_folders,
                                    result, run, trainer_args, write_fixture_and_clip)
from tests.tiny_clip import save_tiny_clip

N_CLASSES = 5
EPOCHS = 8
# Class-specific context learns these colour classes within a few epochs at this LR.
COOP_ARGS = ("DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
             "OPTIM.MAX_EPOCH", str(EPOCHS), "OPTIM.LR", "0.2",
             "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "True",
             "USE_CUDA", "False")  # same path and numbers on every machine


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    root = tmp_path_factory.mktemp("coop")
    data_root, clip_path = write_fixture_and_clip(root, "Caltech101", arch="vit",
                                                  n_classes=N_CLASSES, per_class=10)
    return root, data_root, clip_path


def _args(fixture, output_dir, *overrides, flags=()):
    root, data_root, clip_path = fixture
    return [*flags, *trainer_args("CoOp", "CoOp/rn50.yaml", data_root, clip_path, output_dir,
                                  "Caltech101", *COOP_ARGS, *overrides)]


@pytest.fixture(scope="module")
def trained(fixture):
    """One real training run (default PREC fp16, so the CPU fallback is exercised)."""
    output_dir = fixture[0] / "train"
    stdout = run(_args(fixture, output_dir))
    return output_dir, stdout


def test_training_lowers_the_loss_and_falls_back_to_fp32_once(trained):
    output_dir, stdout = trained
    losses = epoch_losses(stdout)
    assert len(losses) == EPOCHS
    assert losses[-1] < losses[0] - 0.3, losses
    assert losses[-1] < math.log(N_CLASSES), losses  # beyond merely flattening the logits
    assert stdout.count("TRAINER.COOP.PREC = fp16 needs a CUDA device; running in fp32 on cpu") == 1


def test_checkpoint_holds_only_the_prompt_learner_context(trained):
    output_dir, _ = trained
    assert model_folders(output_dir) == ["prompt_learner"]
    checkpoint = load_checkpoint(os.path.join(output_dir, "prompt_learner", f"model.pth.tar-{EPOCHS}"))
    state = checkpoint["state_dict"]
    assert list(state) == ["ctx"] and state["ctx"].shape == (N_CLASSES, 4, 64)
    assert checkpoint["epoch"] == EPOCHS


def test_eval_only_reproduces_the_final_test_accuracy(fixture, trained):
    output_dir, stdout = trained
    eval_dir = fixture[0] / "eval"
    eval_stdout = run(_args(fixture, eval_dir, flags=("--eval-only", "--model-dir", str(output_dir),
                                                      "--load-epoch", str(EPOCHS))))
    assert f"prompt_learner/model.pth.tar-{EPOCHS}" in eval_stdout
    trained_result, eval_result = result(output_dir), result(eval_dir)
    for key in ("accuracy", "error_rate", "macro_f1"):
        assert eval_result[key] == trained_result[key]
    assert trained_result["accuracy"] > 100 / N_CLASSES  # above chance: the context was loaded
    untrained = run(_args(fixture, fixture[0] / "untrained", flags=("--eval-only",)))
    assert "evaluating the untrained prompt_learner" in untrained
    assert result(fixture[0] / "untrained")["accuracy"] != trained_result["accuracy"]


def test_training_changes_the_context_and_not_one_clip_weight(fixture, tmp_path):
    # The tiny ResNet: its BatchNorm running stats would drift if CLIP ever ran in train mode.
    rn_path = save_tiny_clip(str(tmp_path), arch="rn")
    trainer = build_in_process(_args(fixture, tmp_path / "inproc", "OPTIM.MAX_EPOCH", "2",
                                     "TEST.NO_TEST", "True", "MODEL.BACKBONE.PATH", rn_path))
    assert any(k.endswith("running_mean") for k in trainer.clip_model.model.state_dict())
    before = {k: v.clone() for k, v in trainer.clip_model.model.state_dict().items()}
    ctx_before = trainer.classifier.prompt_learner.ctx.detach().clone()
    trainable = [n for n, p in trainer.classifier.named_parameters() if p.requires_grad]
    assert trainable == ["prompt_learner.ctx"]
    trainer.train()
    after = trainer.clip_model.model.state_dict()
    assert after.keys() == before.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    # ... and they are the weights of the file (fp16 -> fp32 is exact), BatchNorm stats included.
    stored = file_weights(rn_path)
    assert all(torch.equal(after[k].cpu(), stored[k]) for k in stored)
    assert not torch.equal(trainer.classifier.prompt_learner.ctx.detach(), ctx_before)
