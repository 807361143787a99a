"""The feature cache inside the CLIP trainers (tiny real CLIP, fixture dataset on disk)."""
import os

import pytest
import torch

from tests.clip_run_helpers import build_in_process, fixture_world, result, run, trainer_args
from tests.tiny_clip import save_tiny_clip

DATASET = "Caltech101"
N_CLASSES, PER_CLASS = 3, 10
EPOCHS, VIEWS = 4, 2
BATCH = 5  # divides the 15 training images: no batch dropped, every image is seen each epoch
CONFIGS = {
    "TaskRes": "TaskRes/adam_lr2e-3_B256_ep100.yaml",
    "CLIP_Adapter": "CLIP_Adapter/rn50.yaml",
    "CoOp": "CoOp/rn50.yaml",
    "ZeroshotCLIP": "ZeroshotCLIP/rn50.yaml",
}


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return fixture_world(tmp_path_factory.mktemp("cache_trainers"), DATASET, N_CLASSES, PER_CLASS)


def args_for(fixture, trainer, out, cache_root=None, *opts, pipeline="fast"):
    """train.py arguments; no `cache_root`: the reference pipeline (no cache at all)."""
    cache = ["TRAIN.FEATURE_CACHE.ENABLED", "False"] if cache_root is None else [
        "TRAIN.FEATURE_CACHE.PIPELINE", pipeline, "TRAIN.FEATURE_CACHE.ROOT", str(cache_root),
        "TRAIN.FEATURE_CACHE.VIEWS", str(VIEWS)]
    return trainer_args(trainer, CONFIGS[trainer], fixture["data_root"], fixture["clip_path"],
                        fixture["root"] / out, DATASET, "OPTIM.MAX_EPOCH", str(EPOCHS),
                        "DATALOADER.TRAIN_X.BATCH_SIZE", str(BATCH), *cache, *opts)


def test_cached_test_features_and_predictions_match_the_encoder(fixture, tmp_path):
    trainer = build_in_process(args_for(fixture, "TaskRes", "match", tmp_path / "cache",
                                        "TRAINER.TaskRes.PREC", "fp32", "DATALOADER.TEST.BATCH_SIZE", "4"),
                               open_test=True)
    assert trainer.test_loader is not trainer.dm.test_loader
    n_batches = 0
    for cached, reference in zip(trainer.test_loader, trainer.dm.test_loader, strict=True):
        assert cached["impath"] == reference["impath"] and torch.equal(cached["label"], reference["label"])
        fresh = trainer.image_features(reference["img"].to(trainer.device))
        assert torch.equal(cached["img"].to(trainer.device), fresh)  # same batch: same bits
        assert torch.equal(trainer.model_inference(cached["img"].to(trainer.device)).argmax(1),
                           trainer.model_inference(reference["img"].to(trainer.device)).argmax(1))
        n_batches += 1
    assert n_batches == len(trainer.dm.test_loader) > 1


@pytest.mark.parametrize("trainer_name", list(CONFIGS))
def test_every_trainer_counts_far_fewer_encoder_passes_with_the_cache(fixture, tmp_path, trainer_name):
    n_train, n_test = fixture["counts"]["train"], fixture["counts"]["test"]
    assert n_train % BATCH == 0
    counts = {}
    for cached in (False, True):
        trainer = build_in_process(args_for(fixture, trainer_name, f"count-{trainer_name}-{cached}",
                                            tmp_path / "cache" if cached else None))
        trainer.train()
        counts[cached] = trainer.image_encoder_forwards
        if not cached:  # the switch off keeps the reference loaders and pipeline
            assert trainer.test_loader is trainer.dm.test_loader
            assert trainer.train_loader_x is trainer.dm.train_loader_x
            assert not os.path.exists(tmp_path / "cache")
    if trainer_name == "ZeroshotCLIP":  # nothing trained: the test set once either way
        assert counts == {False: n_test, True: n_test}
    else:
        assert counts[False] == EPOCHS * n_train + n_test
        assert counts[True] == VIEWS * n_train + n_test


def test_train_py_runs_share_the_cache_and_report_passes(fixture, tmp_path):
    cache = tmp_path / "cache"
    first = run(args_for(fixture, "CLIP_Adapter", "e2e-1", cache))
    n_train, n_test = fixture["counts"]["train"], fixture["counts"]["test"]
    assert f"Image encoder passes: {VIEWS * n_train + n_test:,}" in first
    assert "Pipeline fast: test/val features cached" in first
    assert "training on 2 cached augmented view(s) per image" in first
    # Same images and seed, other method: everything comes from the cache.
    second = run(args_for(fixture, "TaskRes", "e2e-2", cache))
    assert "Image encoder passes: 0" in second
    assert f"Feature cache: all {n_train} train images found" in second
    assert f"Feature cache: all {n_test} test images found" in second
    assert 0 <= result(fixture["root"] / "e2e-2")["accuracy"] <= 100
    # Another seed draws its own training views (the default); test features are shared.
    third = run(args_for(fixture, "TaskRes", "e2e-3", cache, "SEED", "2"))
    assert f"Image encoder passes: {VIEWS * n_train:,}" in third
    assert f"Feature cache: all {n_test} test images found" in third


def test_another_weights_file_misses_the_cache(fixture, tmp_path):
    first = build_in_process(args_for(fixture, "ZeroshotCLIP", "weights-a", tmp_path / "cache"), open_test=True)
    assert first.image_encoder_forwards == fixture["counts"]["test"]
    same = build_in_process(args_for(fixture, "ZeroshotCLIP", "weights-b", tmp_path / "cache"), open_test=True)
    assert same.image_encoder_forwards == 0
    other_file = save_tiny_clip(str(tmp_path), arch="rn", seed=1)
    other = build_in_process(args_for(fixture, "ZeroshotCLIP", "weights-c", tmp_path / "cache",
                                      "MODEL.BACKBONE.PATH", other_file), open_test=True)
    assert other.image_encoder_forwards == fixture["counts"]["test"]
