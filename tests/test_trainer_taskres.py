"""TaskRes end to end on fixture datasets with a tiny real CLIP (train.py subprocesses)."""
import os

import pytest
import torch

from dassl.utils import load_checkpoint, save_checkpoint
from tests.clip_run_helpers import (ON_CPU, build_in_process, encode_texts, epoch_losses, file_weights,
                                    model_folders, result, run, trainer_args, write_fixture_and_clip)
from tests.dataset_fixtures import imagenet_subset_classnames, write_fixture
from tests.tiny_clip import save_tiny_clip
from trainers.common.classifier import cosine_logits
from trainers.common.templates import IMAGENET_TEMPLATES_SELECT

CONFIG = "TaskRes/adam_lr2e-3_B256_ep100.yaml"
EPOCHS = 6
# A higher LR than the official 2e-3: the tiny random CLIP has a small logit scale (~14).
TRAIN_OPTS = ["OPTIM.LR", "0.03", "TRAINER.TaskRes.RESIDUAL_SCALE", "0.5"]
PETS_TEMPLATE = "a photo of a {}, a type of pet."
FP32 = ["TRAINER.TaskRes.PREC", "fp32"]  # in-process checks compare exactly: base in fp32 too


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    """OxfordPets fixture (names with underscores) + tiny ViT CLIP, trained once via train.py."""
    root = tmp_path_factory.mktemp("taskres")
    data_root, clip_path = write_fixture_and_clip(root, "OxfordPets", arch="vit", per_class=10)
    out = root / "run"
    args = trainer_args("TaskRes", CONFIG, data_root, clip_path, out, "OxfordPets",
                        "OPTIM.MAX_EPOCH", str(EPOCHS), *TRAIN_OPTS)
    return dict(root=root, data_root=data_root, clip_path=clip_path, out=out, args=args,
                stdout=run(args))


def test_training_lowers_the_loss(pets):
    fallback = "TRAINER.TaskRes.PREC = fp16 needs a CUDA device; running in fp32 on cpu"
    assert pets["stdout"].count(fallback) == (1 if ON_CPU else 0)
    losses = epoch_losses(pets["stdout"])
    assert len(losses) == EPOCHS
    assert losses[-1] < 0.85 * losses[0], losses


def test_only_the_residual_learner_is_checkpointed(pets):
    assert model_folders(pets["out"]) == ["prompt_learner"]
    checkpoint = load_checkpoint(os.path.join(pets["out"], "prompt_learner", f"model.pth.tar-{EPOCHS}"))
    state = checkpoint["state_dict"]
    assert set(state) == {"base_text_features", "text_feature_residuals"}
    assert state["base_text_features"].shape == state["text_feature_residuals"].shape == (6, 64)
    assert state["text_feature_residuals"].abs().sum() > 0


def test_eval_only_reproduces_the_final_accuracy(pets):
    eval_out = pets["root"] / "eval"
    stdout = run(trainer_args("TaskRes", CONFIG, pets["data_root"], pets["clip_path"], eval_out,
                              "OxfordPets", *TRAIN_OPTS, flags=["--eval-only", "--model-dir",
                              str(pets["out"]), "--load-epoch", str(EPOCHS)]))
    assert f"model.pth.tar-{EPOCHS}" in stdout
    trained = result(pets["out"])
    assert result(eval_out)["accuracy"] == trained["accuracy"]
    assert result(eval_out)["macro_f1"] == trained["macro_f1"]


def test_zero_residual_is_zero_shot_and_clip_stays_bit_identical(pets):
    """RN tiny CLIP on purpose: its BatchNorm running stats must not move during training."""
    rn_path = save_tiny_clip(pets["root"], arch="rn", seed=0)
    args = trainer_args("TaskRes", CONFIG, pets["data_root"], rn_path, pets["root"] / "inproc",
                        "OxfordPets", "OPTIM.MAX_EPOCH", "2", *TRAIN_OPTS, *FP32)
    trainer = build_in_process(args, open_test=True)
    stored = file_weights(rn_path)
    before = {k: v.clone() for k, v in trainer.clip_model.model.state_dict().items()}
    assert all(torch.equal(before[k].cpu(), stored[k]) for k in stored)  # fp32 copies of the file

    # Zero residual: the zero-shot classifier of the raw names (underscores kept).
    classnames = trainer.dm.dataset.classnames
    assert any("_" in name for name in classnames)
    images = next(iter(trainer.dm.test_loader))["img"].to(trainer.device)
    with torch.no_grad():
        raw = encode_texts(trainer.clip_model, [PETS_TEMPLATE.format(c) for c in classnames])
        zero_shot = cosine_logits(trainer.clip_model.encode_image(images), raw, trainer.clip_model.logit_scale)
        torch.testing.assert_close(trainer.model_inference(images), zero_shot)

    trainer.train()
    after = trainer.clip_model.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert trainer.learner.text_feature_residuals.abs().sum() > 0


def test_enhanced_base_flag_replaces_the_text_projection(pets):
    trainer = build_in_process(trainer_args("TaskRes", CONFIG, pets["data_root"], pets["clip_path"],
                                            pets["root"] / "plain", "OxfordPets", *FP32))
    clip_model = trainer.clip_model
    width, dim = clip_model.text_projection.shape
    weight = torch.randn(dim, width, generator=torch.Generator().manual_seed(0))
    folder = pets["root"] / "strong_base" / "OxfordPets" / "rn50_2shots"
    path = save_checkpoint({"state_dict": {"weight": weight}, "epoch": 1}, str(folder),
                           model_name="model.pth.tar")
    enhanced = build_in_process(trainer_args("TaskRes", CONFIG, pets["data_root"], pets["clip_path"],
                                             pets["root"] / "enhanced", "OxfordPets", *FP32,
                                             flags=["--enhanced-base", path]))
    assert torch.equal(enhanced.clip_model.text_projection.cpu(), weight.t())
    classnames = enhanced.dm.dataset.classnames
    # The base is computed with the new projection.
    expected = encode_texts(enhanced.clip_model, [PETS_TEMPLATE.format(c) for c in classnames])
    torch.testing.assert_close(enhanced.learner.base_text_features, expected)
    assert not torch.allclose(enhanced.learner.base_text_features, trainer.learner.base_text_features)

def test_imagenet_model_on_imagenet_a_uses_the_rows_of_its_classes(tmp_path):
    n_imagenet, n_subset = 8, 4
    data_root, clip_path = write_fixture_and_clip(tmp_path, "ImageNet", arch="vit",
                                                  n_classes=n_imagenet, per_class=4)
    write_fixture(data_root, "ImageNetA", n_classes=n_subset, imagenet_classes=n_imagenet, per_class=3)
    out = tmp_path / "imagenet"
    imagenet_args = trainer_args("TaskRes", "TaskRes/adam_lr2e-4_B256_ep100.yaml", data_root, clip_path,
                                 out, "ImageNet", "OPTIM.MAX_EPOCH", "2", "DATASET.NUM_SHOTS", "2",
                                 *TRAIN_OPTS, *FP32)
    # ImageNet's base averages the 7 ensemble prompts and its own, raw (not normalised).
    imagenet = build_in_process(imagenet_args)
    names = imagenet.dm.dataset.classnames
    prompts = [t.format(names[0]) for t in (*IMAGENET_TEMPLATES_SELECT, "a photo of a {}.")]
    expected = encode_texts(imagenet.clip_model, prompts).mean(0)
    torch.testing.assert_close(imagenet.learner.base_text_features[0], expected)
    imagenet.train()
    trained = load_checkpoint(os.path.join(out, "prompt_learner", "model.pth.tar-2"))["state_dict"]
    assert trained["text_feature_residuals"].shape[0] == n_imagenet

    a_args = trainer_args("TaskRes", "TaskRes/adam_lr2e-4_B256_ep100.yaml", data_root, clip_path,
                          tmp_path / "imagenet_a", "ImageNetA", *TRAIN_OPTS,
                          flags=["--eval-only", "--model-dir", str(out), "--load-epoch", "2"])
    stdout = run(a_args)
    assert f"keeping the rows of the {n_subset} classes" in stdout
    assert "* accuracy:" in stdout

    subset_names, rows = imagenet_subset_classnames("ImageNetA", n_subset, n_imagenet)
    trainer = build_in_process(a_args)
    assert trainer.dm.dataset.classnames == subset_names
    trainer.load_model(str(out), epoch=2)
    for key in ("base_text_features", "text_feature_residuals"):
        assert torch.equal(getattr(trainer.learner, key).cpu(), trained[key][rows])
