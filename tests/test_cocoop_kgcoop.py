"""CoCoOp and KgCoOp: their text paths agree with the official computation, and train.py runs
them on a benchmark layout (base classes), deterministically per seed, resuming after a kill to
the same weights, and tests the base-class model on the new classes."""
import os
import re
import signal

import pytest
import torch

from dassl.config import get_cfg_default
from tests.clip_run_helpers import result, trainer_args, write_fixture_and_clip
from tests.engine_helpers import run_train, train_killed_at_log_line
from trainers.cocoop import ConditionalPromptClassifier
from trainers.common.backbone import backbone_from_clip_model
from tests.tiny_clip import build_tiny_clip
from trainers.config import extend_cfg
from trainers.kgcoop import hand_crafted_template

# Whole train.py runs: minutes on a loaded 2-core machine, beyond the suite's 600 s default.
pytestmark = pytest.mark.timeout(1800)


NAMES = ["red panda", "golden retriever dog", "cat", "space shuttle", "x"]
CONFIGS = {"CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv1.yaml"}
EPOCHS = 3


def _classifier(shared, truncate):
    clip_model = backbone_from_clip_model(build_tiny_clip("vit").float(), "tiny-vit").requires_grad_(False)
    cfg = extend_cfg(get_cfg_default())
    cfg.TRAINER.COCOOP.N_CTX, cfg.TRAINER.COCOOP.CTX_INIT = 4, "a photo of a"
    cfg.TRAINER.COCOOP.SHARED_CONTEXT, cfg.TRAINER.COCOOP.TRUNCATE_TEXT = shared, truncate
    torch.manual_seed(1)
    return ConditionalPromptClassifier(cfg, NAMES, clip_model), clip_model


def test_cocoop_text_paths_match_the_official_per_image_loop():
    features = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    official, _ = _classifier(shared=False, truncate=False)
    assert official.text_path == "full"
    reference = official(features)
    for shared in (True, False):
        ours, _ = _classifier(shared=shared, truncate=True)
        assert ours.text_path == ("shared-context" if shared else "truncated")
        torch.testing.assert_close(ours(features), reference, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # the test path: images in chunks
            ours.eval_sequences = len(NAMES)  # one image per pass
            torch.testing.assert_close(ours(features), reference, rtol=1e-5, atol=1e-5)


def test_cocoop_meta_net_has_the_official_shape_and_keys():
    classifier, clip_model = _classifier(shared=True, truncate=True)
    net = classifier.prompt_learner.meta_net
    vis = clip_model.embed_dim
    assert (net.linear1.in_features, net.linear1.out_features) == (vis, vis // 16)
    assert net.linear2.out_features == clip_model.text_tower.width
    keys = set(classifier.prompt_learner.state_dict())
    assert keys == {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
                    "meta_net.linear2.bias"}


def test_kgcoop_uses_its_own_dtd_template_and_clips_elsewhere():
    assert hand_crafted_template("DescribableTextures") == "a photo of a {}, a type of texture."
    assert hand_crafted_template("OxfordPets") == "a photo of a {}, a type of pet."
    assert hand_crafted_template("DemoShapes") == "a drawing of a {}."


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("b2n_methods")
    data_root, clip_path = write_fixture_and_clip(root, "Caltech101", arch="vit", n_classes=6, per_class=6)
    return root, data_root, clip_path


def _args(world, trainer, out, *extra, flags=()):
    _, data_root, clip_path = world
    batch = "1" if trainer == "CoCoOp" else "8"
    return trainer_args(trainer, CONFIGS[trainer], data_root, clip_path, out, "Caltech101",
                        "DATASET.NUM_SHOTS", "2", "OPTIM.MAX_EPOCH", str(EPOCHS), "DATALOADER.TRAIN_X.BATCH_SIZE",
                        batch, "DATASET.SUBSAMPLE_CLASSES", "base", "USE_CUDA", "False", *extra, flags=flags)


def run(args):
    """train.py as a subprocess (a generous limit: the machine may be shared); its stdout."""
    return run_train(args, timeout=1500).stdout


def _weights(out):
    path = os.path.join(out, "prompt_learner", f"model.pth.tar-{EPOCHS}")
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("trainer", list(CONFIGS))
def test_trains_on_base_deterministically_resumes_after_a_kill_and_tests_on_new(world, trainer):
    root = world[0]
    first, second, killed = (str(root / f"{trainer}_{name}") for name in ("a", "b", "killed"))
    run(_args(world, trainer, first))
    run(_args(world, trainer, second))
    assert result(first)["num_classes"] == 3 and result(first)["subsample_classes"] == "base"
    assert result(first)["accuracy"] == result(second)["accuracy"]
    for key, value in _weights(first).items():
        assert torch.equal(value, _weights(second)[key]), key

    rolling = ("TRAIN.RESUME_EVERY_MINUTES", "0")
    code = train_killed_at_log_line(_args(world, trainer, killed, *rolling), re.escape(f"epoch [2/{EPOCHS}]"))
    assert code == -signal.SIGKILL and not os.path.isfile(os.path.join(killed, "result.json"))
    assert "resuming after epoch" in run(_args(world, trainer, killed, *rolling))
    assert result(killed)["accuracy"] == result(first)["accuracy"]
    for key, value in _weights(first).items():
        assert torch.equal(value, _weights(killed)[key]), key

    new = str(root / f"{trainer}_new")
    stdout = run(_args(world, trainer, new, "DATASET.SUBSAMPLE_CLASSES", "new",
                       flags=("--eval-only", "--model-dir", first, "--load-epoch", str(EPOCHS))))
    assert result(new)["num_classes"] == 3 and result(new)["subsample_classes"] == "new"
    assert result(new)["loaded_epoch"] == EPOCHS and "Evaluate on the *test* set" in stdout
