"""Tip-Adapter and Tip-Adapter-F end to end with a tiny real CLIP (train.py subprocesses)."""
import os

import pytest
import torch

import train
from dassl.utils import load_checkpoint, set_random_seed
from dassl.utils.errors import UserError
from tests.clip_run_helpers import build_in_process, model_folders, result, run, trainer_args, write_fixture_and_clip
from tests.dataset_fixtures import fixture_counts
from tests.engine_helpers import run_train
from trainers.common.run_record import check_checkpoint_source
from trainers.tip_adapter import OFFICIAL_SETTINGS, TipAdapter, dataset_settings, search_grid

SHOTS = 2
# A small search grid keeps the test fast; the official (200, 20) grid is checked separately.
SMALL = ["DATASET.NUM_SHOTS", str(SHOTS), "TRAINER.TIP_ADAPTER.SEARCH_STEP", "(10, 5)",
         "TRAINER.TIP_ADAPTER.AUGMENT_EPOCH", "2", "TRAINER.TIP_ADAPTER.PREC", "fp32"]
F_EPOCHS = 3


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = tmp_path_factory.mktemp("tip")
    data_root, clip_path = write_fixture_and_clip(root, "OxfordPets", arch="rn", per_class=8)
    return dict(root=root, data_root=data_root, clip_path=clip_path)


def tip_args(pets, trainer, out, *opts, flags=()):
    return trainer_args(trainer, f"{trainer}/rn50.yaml", pets["data_root"], pets["clip_path"], out,
                        "OxfordPets", *SMALL, *opts, flags=flags)


def test_official_grid_and_settings():
    assert search_grid(7, 200)[:2] == [0.1, 0.1 + 6.9 / 200] and len(search_grid(7, 200)) == 200
    assert search_grid(3, 20)[-1] == pytest.approx(0.1 + 19 * 2.9 / 20)
    assert len(OFFICIAL_SETTINGS) == 11
    assert dataset_settings("EuroSAT")[0].epochs == 100
    assert dataset_settings("ImageNetSketch") == (OFFICIAL_SETTINGS["ImageNet"], "ImageNet")


@pytest.fixture(scope="module")
def tip_run(pets):
    out = pets["root"] / "tip"
    return out, run(tip_args(pets, "TipAdapter", out))


def test_tip_adapter_trains_nothing_searches_on_val_and_eval_only_reproduces(pets, tip_run):
    out, stdout = tip_run
    assert "Searched alpha x beta (5 x 10) on the few-shot val split" in stdout
    record = result(out)
    assert record["search"]["split"] == "few-shot val" and record["trainable_params"] == 0
    assert record["alpha"] in search_grid(3, 5) and record["beta"] in search_grid(7, 10)
    assert model_folders(out) == ["tip_adapter"]
    state = load_checkpoint(os.path.join(out, "tip_adapter", "model.pth.tar-1"))["state_dict"]
    n_items = 6 * SHOTS  # the fixture's 6 pet classes
    assert state["keys"].shape[0] == state["values"].shape[0] == n_items
    assert torch.allclose(state["keys"].norm(dim=-1), torch.ones(n_items))
    assert state["_extra_state"] == {"dataset": "OxfordPets", "shots": SHOTS, "seed": 1, "backbone": "RN50"}

    eval_out = pets["root"] / "tip_eval"
    run(tip_args(pets, "TipAdapter", eval_out, flags=["--eval-only", "--model-dir", str(out)]))
    again = result(eval_out)
    assert (again["accuracy"], again["alpha"], again["beta"]) == (record["accuracy"], record["alpha"], record["beta"])


def test_a_cache_from_another_shot_count_or_seed_is_refused(pets, tip_run):
    out, _ = tip_run
    saved = os.path.join(str(out), "tip_adapter", "model.pth.tar-1")
    args = tip_args(pets, "TipAdapter", pets["root"] / "refused", "DATASET.NUM_SHOTS", "1",
                    flags=["--eval-only", "--model-dir", str(out), "--load-epoch", "1"])
    proc = run_train(args, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert saved in proc.stderr and f"shots {SHOTS}, seed 1" in proc.stderr and "--model-dir" in proc.stderr
    # Another seed: same shapes, so only the recorded source can tell (checked in process).
    cfg = train.setup_cfg(train.build_parser().parse_args(tip_args(pets, "TipAdapter", pets["root"] / "seed2",
                                                                   flags=["--seed", "2"])))
    with pytest.raises(UserError, match="seed 1.*this run has .*seed 2"):
        check_checkpoint_source(saved, cfg, "TipAdapter cache")


def test_alpha_zero_is_zero_shot_clip(pets):
    tip = build_in_process(tip_args(pets, "TipAdapter", pets["root"] / "inproc",
                                    "TRAINER.TIP_ADAPTER.ZS_LOGIT_SCALE", "learned"), open_test=True)
    zero_shot = build_in_process(trainer_args("ZeroshotCLIP", "ZeroshotCLIP/rn50.yaml", pets["data_root"],
                                              pets["clip_path"], pets["root"] / "zs", "OxfordPets", *SMALL))
    tip.build_cache()
    images = next(iter(tip.test_loader))["img"].to(tip.device)
    with torch.no_grad():
        features = tip.image_features(images)
        expected = zero_shot.model_inference(images)
        torch.testing.assert_close(tip.logits(features, alpha=0.0), expected)
        assert not torch.allclose(tip.logits(features, alpha=1.0), expected)


def test_tip_adapter_f_starts_as_tip_adapter_and_fine_tunes_its_keys(pets):
    tip = build_in_process(tip_args(pets, "TipAdapter", pets["root"] / "f_tip"), open_test=True)
    tip_f = build_in_process(tip_args(pets, "TipAdapterF", pets["root"] / "f_inproc"))
    for trainer in (tip, tip_f):
        set_random_seed(1)
        trainer.build_cache()
    assert isinstance(tip_f, TipAdapter) and tip_f.cache.keys.requires_grad
    torch.testing.assert_close(tip_f.cache.keys, tip.cache.keys, rtol=0, atol=0)
    images = next(iter(tip.test_loader))["img"].to(tip.device)
    with torch.no_grad():
        features = tip.image_features(images)
        torch.testing.assert_close(tip_f.logits(features), tip.logits(features))

    out = pets["root"] / "tip_f"
    stdout = run(tip_args(pets, "TipAdapterF", out, "OPTIM.MAX_EPOCH", str(F_EPOCHS), "OPTIM.LR", "0.01"))
    assert "Deploy the model with the best val performance" in stdout
    record = result(out)
    assert record["selection"] == "best epoch on the val split" and record["search"]["split"] == "few-shot val"
    assert record["trainable_params"] == 6 * SHOTS * tip.text_features.shape[1]
    last = load_checkpoint(os.path.join(out, "tip_adapter", f"model.pth.tar-{F_EPOCHS}"))["state_dict"]
    assert not torch.allclose(last["keys"], tip.cache.keys.cpu())

    eval_out = pets["root"] / "tip_f_eval"
    run(tip_args(pets, "TipAdapterF", eval_out, "OPTIM.MAX_EPOCH", str(F_EPOCHS),
                 flags=["--eval-only", "--model-dir", str(out)]))
    assert result(eval_out)["accuracy"] == record["accuracy"]


def test_tip_adapter_f_reads_every_image_feature_through_the_feature_cache(pets):
    out = pets["root"] / "tip_f_cached"
    stdout = run(tip_args(pets, "TipAdapterF", out, "OPTIM.MAX_EPOCH", "2", "TRAIN.FEATURE_CACHE.PIPELINE", "fast",
                     "TRAIN.FEATURE_CACHE.VIEWS", "2", "TRAIN.FEATURE_CACHE.ROOT", str(pets["root"] / "tip_f_cache")))
    counts = fixture_counts("OxfordPets", per_class=8)
    n_train, n_val = 6 * SHOTS, 6 * SHOTS  # min(K, 4) validation images per class
    # Two stored views per training image (the cache keys and both epochs read them), val and test once.
    assert f"Image encoder passes: {2 * n_train + n_val + counts['test']:,}" in stdout
    assert "stored view(s) per training image stand for the 2 augmented passes" not in stdout
    assert result(out)["search"]["split"] == "few-shot val"
