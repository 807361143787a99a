"""The TaskRes ablation variants (paper Tables 2, 4, 5) through train.py with a tiny real CLIP."""
import os

import pytest
import torch

import train
from dassl.utils import load_checkpoint
from tests.clip_run_helpers import build_in_process, result, run, trainer_args, write_fixture_and_clip
from trainers.common.classifier import cosine_logits
from dassl.utils.errors import UserError
from trainers.common.experiment import METHODS
from trainers.taskres import TaskRes

CONFIG = "TaskRes/adam_lr2e-3_B256_ep100.yaml"
EPOCHS = 2
OPTS = ["OPTIM.MAX_EPOCH", str(EPOCHS), "OPTIM.LR", "0.03", "TRAINER.TaskRes.RESIDUAL_SCALE", "0.5",
        "TRAINER.TaskRes.PREC", "fp32", "DATASET.NUM_SHOTS", "2"]
DIM, N_CLASSES = 64, 6  # tiny CLIP's embedding width, the pets fixture's classes


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    data_root, clip_path = write_fixture_and_clip(root, "OxfordPets", arch="rn", per_class=6)
    return dict(root=root, data_root=data_root, clip_path=clip_path)


def args(pets, out, *keys, flags=()):
    return trainer_args("TaskRes", CONFIG, pets["data_root"], pets["clip_path"], pets["root"] / out,
                        "OxfordPets", *OPTS, *keys, flags=flags)


def saved_state(pets, out):
    return load_checkpoint(os.path.join(pets["root"], out, "prompt_learner", f"model.pth.tar-{EPOCHS}"))["state_dict"]


def test_default_with_zero_residual_gives_the_base_logits(pets):
    trainer = build_in_process(args(pets, "default"), open_test=True)
    assert set(trainer.learner.state_dict()) == {"base_text_features", "text_feature_residuals"}
    assert trainer.learner.alpha == 0.5 and not isinstance(trainer.learner.alpha, torch.Tensor)
    images = next(iter(trainer.test_loader))["img"].to(trainer.device)
    with torch.no_grad():
        features = trainer.image_features(images)
        expected = cosine_logits(features, trainer.learner.base_text_features, trainer.clip_model.logit_scale)
        torch.testing.assert_close(trainer.model_inference(images), expected, rtol=0, atol=0)


def test_phi_and_image_residual_with_learnable_alpha_train_and_reload(pets):
    keys = ["TRAINER.TaskRes.TEXT_RESIDUAL", "adapter_residual", "TRAINER.TaskRes.IMAGE_RESIDUAL", "True",
            "TRAINER.TaskRes.LEARN_ALPHA", "True"]
    run(args(pets, "both", *keys))
    state = saved_state(pets, "both")
    assert set(state) == {"base_text_features", "text_adapter.fc.0.weight", "text_adapter.fc.2.weight",
                          "image_feature_residual", "alpha"}
    assert state["image_feature_residual"].abs().sum() > 0
    record = result(pets["root"] / "both")
    assert record["learned_alpha"] == pytest.approx(state["alpha"].item()) and state["alpha"].item() != 0.5
    assert record["trainable_params"] == 2 * DIM * (DIM // 4) + DIM + 1
    run(args(pets, "both_eval", *keys, flags=["--eval-only", "--model-dir", str(pets["root"] / "both"),
                                              "--load-epoch", str(EPOCHS)]))
    assert result(pets["root"] / "both_eval")["accuracy"] == record["accuracy"]


def test_text_adapter_alone_and_image_residual_alone(pets):
    """In process (the same config code as train.py): the subprocess path is covered above."""
    adapter = build_in_process(args(pets, "adapter", "TRAINER.TaskRes.TEXT_RESIDUAL", "adapter"))
    adapter.train()
    assert set(saved_state(pets, "adapter")) == {"base_text_features", "text_adapter.fc.0.weight",
                                                 "text_adapter.fc.2.weight"}
    image = build_in_process(args(pets, "image", "TRAINER.TaskRes.TEXT_RESIDUAL", "none",
                                  "TRAINER.TaskRes.IMAGE_RESIDUAL", "True"))
    image.train()
    state = saved_state(pets, "image")
    assert set(state) == {"base_text_features", "image_feature_residual"}
    assert state["image_feature_residual"].abs().sum() > 0
    assert result(pets["root"] / "image")["trainable_params"] == DIM


def test_base_only_evaluates_without_training(pets):
    stdout = run(args(pets, "base", "TRAINER.TaskRes.TEXT_RESIDUAL", "none"))
    assert "has nothing to train: evaluating the base classifier" in stdout
    assert result(pets["root"] / "base")["trainable_params"] == 0
    assert not os.path.isdir(pets["root"] / "base" / "prompt_learner")


def test_a_learnable_alpha_without_residual_is_refused(pets):
    cfg = train.setup_cfg(train.build_parser().parse_args(
        args(pets, "bad", "TRAINER.TaskRes.TEXT_RESIDUAL", "none", "TRAINER.TaskRes.LEARN_ALPHA", "True")))
    with pytest.raises(UserError, match="TRAINER.TaskRes.LEARN_ALPHA True has no alpha to learn"):
        TaskRes.check_cfg(None, cfg)


def test_each_ablation_is_declared_with_its_own_variant_folder():
    names = ["taskres_base", "taskres_adapter", "taskres_adapter_residual", "taskres_image",
             "taskres_image_text", "taskres_alpha", "taskres_learn_alpha"]
    folders = [METHODS[name].variant({"ALPHA": "0.1"}) for name in names]
    assert len(set(folders)) == len(names) and all(METHODS[n].trainer == "TaskRes" for n in names)
    assert METHODS["taskres_adapter"].config("imagenet", 16) == "adam_lr2e-4_B256_ep200"
    assert METHODS["taskres_image"].overrides("oxford_flowers", 1)[:2] == ["TRAINER.TaskRes.RESIDUAL_SCALE", "1.0"]
    assert METHODS["taskres_base"].trains is False
