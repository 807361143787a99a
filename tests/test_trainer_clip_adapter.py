"""CLIP-Adapter end to end on a fixture dataset with a tiny real CLIP (train.py subprocesses)."""
import os

import pytest
import torch

from dassl.utils import load_checkpoint
from tests.clip_run_helpers import (build_in_process, encode_texts, epoch_losses, file_weights, model_folders,
                                    result, run, trainer_args, write_fixture_and_clip)
from tests.tiny_clip import save_tiny_clip
from trainers.common.classifier import l2_normalize

CONFIG = "CLIP_Adapter/rn50.yaml"
EPOCHS = 6
TRAIN_OPTS = ["OPTIM.LR", "1.0"]  # SGD; the tiny random CLIP needs a large step to move in 6 epochs


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("adapter")
    data_root, clip_path = write_fixture_and_clip(root, "OxfordPets", arch="vit", per_class=10)
    out = root / "run"
    stdout = run(trainer_args("CLIP_Adapter", CONFIG, data_root, clip_path, out, "OxfordPets",
                              "OPTIM.MAX_EPOCH", str(EPOCHS), *TRAIN_OPTS))
    return dict(root=root, data_root=data_root, clip_path=clip_path, out=out, stdout=stdout)


def test_training_lowers_the_loss(pets):
    losses = epoch_losses(pets["stdout"])
    assert len(losses) == EPOCHS
    assert losses[-1] < 0.85 * losses[0], losses


def test_only_the_adapter_is_checkpointed(pets):
    assert model_folders(pets["out"]) == ["clip_adapter"]
    state = load_checkpoint(os.path.join(pets["out"], "clip_adapter", f"model.pth.tar-{EPOCHS}"))["state_dict"]
    assert {k: tuple(v.shape) for k, v in state.items()} == {"fc.0.weight": (16, 64), "fc.2.weight": (64, 16)}


def test_eval_only_reproduces_the_final_accuracy(pets):
    eval_out = pets["root"] / "eval"
    run(trainer_args("CLIP_Adapter", CONFIG, pets["data_root"], pets["clip_path"], eval_out, "OxfordPets",
                     flags=["--eval-only", "--model-dir", str(pets["out"]), "--load-epoch", str(EPOCHS)]))
    assert result(eval_out)["accuracy"] == result(pets["out"])["accuracy"]
    assert result(eval_out)["macro_f1"] == result(pets["out"])["macro_f1"]


def test_class_prompts_read_underscores_as_spaces_and_clip_stays_bit_identical(pets):
    """RN tiny CLIP on purpose: its BatchNorm running stats must not move during training."""
    rn_path = save_tiny_clip(pets["root"], arch="rn", seed=0)
    trainer = build_in_process(trainer_args("CLIP_Adapter", CONFIG, pets["data_root"], rn_path,
                                            pets["root"] / "inproc", "OxfordPets", "OPTIM.MAX_EPOCH", "2",
                                            *TRAIN_OPTS))
    classnames = trainer.dm.dataset.classnames
    prompts = [f"a photo of a {c.replace('_', ' ')}, a type of pet." for c in classnames]
    expected = l2_normalize(encode_texts(trainer.clip_model, prompts))
    torch.testing.assert_close(trainer.text_features, expected)
    assert trainer.clip_model.dtype == torch.float32
    stored = file_weights(rn_path)
    before = {k: v.clone() for k, v in trainer.clip_model.model.state_dict().items()}
    assert all(torch.equal(before[k].cpu(), stored[k]) for k in stored)

    adapter_before = {k: v.clone() for k, v in trainer.adapter.state_dict().items()}
    trainer.train()
    after = trainer.clip_model.model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    assert any(not torch.equal(v, trainer.adapter.state_dict()[k]) for k, v in adapter_before.items())


def test_ratio_mixes_adapted_and_original_features(pets):
    trainer = build_in_process(trainer_args("CLIP_Adapter", CONFIG, pets["data_root"], pets["clip_path"],
                                            pets["root"] / "ratio", "OxfordPets",
                                            "TRAINER.CLIP_ADAPTER.RATIO", "0.0"), open_test=True)
    images = next(iter(trainer.dm.test_loader))["img"].to(trainer.device)
    features = trainer.image_features(images)
    with torch.no_grad():  # ratio 0: the adapter is bypassed, plain zero-shot CLIP logits
        expected = trainer.clip_model.logit_scale.exp() * l2_normalize(features) @ trainer.text_features.t()
        torch.testing.assert_close(trainer.model_inference(images), expected)
        trainer.ratio = 1.0  # ratio 1: only the adapter's output counts
        adapted = l2_normalize(trainer.adapter(features))
        torch.testing.assert_close(trainer.model_inference(images),
                                   trainer.clip_model.logit_scale.exp() * adapted @ trainer.text_features.t())


def test_bad_ratio_names_the_key(pets):
    with pytest.raises(ValueError, match="TRAINER.CLIP_ADAPTER.RATIO"):
        build_in_process(trainer_args("CLIP_Adapter", CONFIG, pets["data_root"], pets["clip_path"],
                                      pets["root"] / "bad", "OxfordPets", "TRAINER.CLIP_ADAPTER.RATIO", "1.5"))
