"""The default pipeline (exact-cached-eval) computes what the reference pipeline computes, bit
for bit on CPU, and the cache never changes a run: cold and warm caches give the same run.

Runs use a fixture dataset and a tiny real CLIP, through train.py's own config code: in
process (to keep the suite fast) or as the real train.py command (subprocess).
"""
import os
import re

import pytest
import torch

from dassl.config import get_cfg_default
from dassl.utils import load_checkpoint
from dassl.utils.errors import UserError
from tests.clip_run_helpers import build_in_process, fixture_world, model_folders, result, run, trainer_args
from trainers.common.feature_cache import resolve_pipeline
from trainers.config import extend_cfg

DATASET = "Caltech101"
N_CLASSES, PER_CLASS = 3, 10
EPOCHS = 3
CONFIGS = {
    "TaskRes": "TaskRes/adam_lr2e-3_B256_ep100.yaml",
    "CLIP_Adapter": "CLIP_Adapter/rn50.yaml",
    "CoOp": "CoOp/rn50.yaml",
}
# One line per training step: position, loss and accuracy (running values), learning rate.
STEP = re.compile(r"(epoch \[\d+/\d+\] batch \[\d+/\d+\]).*? (loss \S+ \(\S+\) acc \S+ \(\S+\)) (lr \S+)")
# What a run computed (result.json also records when it finished and how).
RESULT_KEYS = ("accuracy", "error_rate", "macro_f1", "split", "epochs")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return fixture_world(tmp_path_factory.mktemp("exact_cache"), DATASET, N_CLASSES, PER_CLASS)


def train(fixture, trainer, out, *cache_opts, extra=(), capsys=None):
    """Run train.py (in process when given `capsys`); returns (stdout, output folder)."""
    output = fixture["root"] / out
    args = trainer_args(trainer, CONFIGS[trainer], fixture["data_root"], fixture["clip_path"], output,
                        DATASET, "OPTIM.MAX_EPOCH", str(EPOCHS), "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
                        "DATALOADER.TEST.BATCH_SIZE", "4", "TRAINER.TaskRes.PREC", "fp32",
                        "TRAINER.COOP.PREC", "fp32", *cache_opts, *extra)
    if capsys is None:
        return run(args), output
    capsys.readouterr()
    build_in_process(args).train()
    return capsys.readouterr().out, output


def run_record(stdout, output):
    """Everything a run computed: its step lines, final metrics and every saved weight."""
    steps = STEP.findall(stdout)
    assert steps, stdout[-2000:]
    metrics = {k: v for k, v in result(output).items() if k in RESULT_KEYS}
    weights = {}
    for folder in model_folders(output):
        for name in sorted(os.listdir(output / folder)):
            if name.startswith("model"):
                weights[f"{folder}/{name}"] = load_checkpoint(str(output / folder / name))["state_dict"]
    assert weights
    return steps, metrics, weights


def assert_same_run(a, b):
    steps_a, metrics_a, weights_a = a
    steps_b, metrics_b, weights_b = b
    assert steps_a == steps_b
    assert metrics_a == metrics_b
    assert weights_a.keys() == weights_b.keys()
    for name, state in weights_a.items():
        assert state.keys() == weights_b[name].keys()
        for key, tensor in state.items():
            assert torch.equal(tensor, weights_b[name][key]), f"{name} {key} differs"


def passes(stdout):
    return int(re.search(r"Image encoder passes: ([\d,]+)", stdout).group(1).replace(",", ""))


@pytest.mark.parametrize("trainer", list(CONFIGS))
def test_default_pipeline_equals_the_reference_bit_for_bit_and_warm_equals_cold(fixture, tmp_path, capsys,
                                                                                trainer):
    # CoOp also selects its model on val: validation after every epoch draws from the random
    # stream between training epochs, so the cached val loader must draw as the image loader does.
    extra = ("TEST.FINAL_MODEL", "best_val") if trainer == "CoOp" else ()
    cache = ["TRAIN.FEATURE_CACHE.ROOT", str(tmp_path / "cache")]  # the default pipeline, a fresh cache
    reference = train(fixture, trainer, f"{trainer}-reference", "TRAIN.FEATURE_CACHE.ENABLED", "False",
                      extra=extra, capsys=capsys)
    cold = train(fixture, trainer, f"{trainer}-cold", *cache, extra=extra, capsys=capsys)
    warm = train(fixture, trainer, f"{trainer}-warm", *cache, extra=extra, capsys=capsys)
    assert "Pipeline reference" in reference[0] and "Pipeline exact-cached-eval" in cold[0]
    assert "Feature cache: encoding" in cold[0] and "Feature cache: all" in warm[0]
    assert "Feature cache: encoding" not in warm[0]
    assert_same_run(run_record(*reference), run_record(*cold))
    assert_same_run(run_record(*cold), run_record(*warm))
    # The reference encodes the test set once and (best_val) the val set after every epoch;
    # a cold cache encodes each eval image once, a warm one none.
    n_test, n_val = fixture["counts"]["test"], fixture["counts"]["val"] if extra else 0
    assert passes(reference[0]) - passes(cold[0]) == (EPOCHS - 1) * n_val
    assert passes(reference[0]) - passes(warm[0]) == n_test + EPOCHS * n_val


def test_fast_pipeline_cold_and_warm_cache_give_the_same_train_py_run(fixture, tmp_path):
    # Building the training views before the first epoch must not move the random state.
    fast = ["TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEWS", "2",
            "TRAIN.FEATURE_CACHE.ROOT", str(tmp_path / "cache")]
    cold = train(fixture, "TaskRes", "fast-cold", *fast)
    warm = train(fixture, "TaskRes", "fast-warm", *fast)
    assert passes(cold[0]) > 0 and passes(warm[0]) == 0
    assert_same_run(run_record(*cold), run_record(*warm))


@pytest.mark.parametrize("opts, expected", [
    ({"PIPELINE": "quick"}, "TRAIN.FEATURE_CACHE.PIPELINE = 'quick'; use one of reference, exact-cached-eval, fast"),
    ({"ENABLED": False, "PIPELINE": "fast"}, "set PIPELINE reference (or ENABLED True)"),
    ({"PIPELINE": "fast", "VIEWS": 0}, "TRAIN.FEATURE_CACHE.VIEWS = 0; use at least 1"),
    ({"PIPELINE": "fast", "VIEW_ORDER": "shuffle"},
     "TRAIN.FEATURE_CACHE.VIEW_ORDER = 'shuffle'; use one of cycle, random"),
])
def test_pipeline_mistakes_name_the_key_and_the_fix(opts, expected):
    cfg = extend_cfg(get_cfg_default())
    for key, value in opts.items():
        cfg.TRAIN.FEATURE_CACHE[key] = value
    with pytest.raises(UserError) as error:
        resolve_pipeline(cfg)
    assert expected in str(error.value)


@pytest.mark.parametrize("opts, pipeline", [
    ({}, {"name": "exact-cached-eval", "views": None}),
    ({"ENABLED": False}, {"name": "reference", "views": None}),
    ({"PIPELINE": "reference"}, {"name": "reference", "views": None}),
    ({"PIPELINE": "fast", "VIEWS": 10}, {"name": "fast", "views": 10, "view_order": "random",
                                         "views_per_seed": True}),
    ({"PIPELINE": "fast", "VIEWS": 500, "VIEW_ORDER": "cycle"},  # capped: views past the last epoch
     {"name": "fast", "views": 200, "view_order": "cycle", "views_per_seed": True}),
    ({"PIPELINE": "fast", "VIEWS": 500, "VIEWS_PER_SEED": False},
     {"name": "fast", "views": 500, "view_order": "random", "views_per_seed": False}),
])
def test_pipeline_record(opts, pipeline):
    cfg = extend_cfg(get_cfg_default())
    cfg.OPTIM.MAX_EPOCH = 200
    for key, value in opts.items():
        cfg.TRAIN.FEATURE_CACHE[key] = value
    assert resolve_pipeline(cfg) == pipeline


def test_random_view_order_reads_a_view_per_image_and_epoch_without_moving_the_rng(fixture, tmp_path, capsys):
    views = 3
    opts = ["TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEWS", str(views),
            "TRAIN.FEATURE_CACHE.VIEW_ORDER", "random", "TRAIN.FEATURE_CACHE.ROOT", str(tmp_path / "cache")]
    args = trainer_args("TaskRes", CONFIGS["TaskRes"], fixture["data_root"], fixture["clip_path"],
                        tmp_path / "run", DATASET, "OPTIM.MAX_EPOCH", "4", *opts)
    trainer = build_in_process(args)
    trainer.before_train()
    dataset = trainer.train_loader_x.dataset
    seen = []
    for epoch in range(4):
        trainer.epoch = epoch
        state = torch.random.get_rng_state()
        trainer.before_epoch()
        assert torch.equal(state, torch.random.get_rng_state())
        seen.append(dataset.view.clone())
        batch = dataset[list(range(len(dataset)))]
        torch.testing.assert_close(batch["img"], dataset.features[torch.arange(len(dataset)), dataset.view])
    seen = torch.stack(seen)
    assert seen.min() >= 0 and seen.max() < views
    assert len({tuple(row.tolist()) for row in seen.T}) > 1  # images do not move in lockstep
    assert not all(torch.equal(seen[0], row) for row in seen[1:])  # nor repeat the same draw


@pytest.mark.parametrize("per_seed", [True, False])
def test_views_are_drawn_per_seed_unless_shared(fixture, tmp_path, per_seed):
    """Per-seed views let the seeds of a cell average over augmentation draws as reference runs
    do; shared views are the same cached features in every seed."""
    opts = ["TRAIN.FEATURE_CACHE.PIPELINE", "fast", "TRAIN.FEATURE_CACHE.VIEWS", "2",
            "TRAIN.FEATURE_CACHE.VIEWS_PER_SEED", str(per_seed), "TRAIN.FEATURE_CACHE.ROOT", str(tmp_path / "cache")]
    views = {}
    for seed in ("1", "2"):
        args = trainer_args("TaskRes", CONFIGS["TaskRes"], fixture["data_root"], fixture["clip_path"],
                            tmp_path / f"run{seed}", DATASET, "OPTIM.MAX_EPOCH", "2", *opts)  # all training images
        args[args.index("--seed") + 1] = seed
        trainer = build_in_process(args)
        trainer.before_train()
        assert trainer.pipeline["views_per_seed"] is per_seed
        views[seed] = trainer.train_loader_x.dataset.features
    assert views["1"].shape == views["2"].shape
    assert torch.equal(views["1"], views["2"]) is not per_seed


def test_test_features_are_keyed_by_the_test_batches(fixture, tmp_path):
    """Another test batch size gives other batches, so other (own) rows; the same size reuses."""
    cache = ["TRAIN.FEATURE_CACHE.ROOT", str(tmp_path / "cache")]
    n_test = fixture["counts"]["test"]

    def build(batch_size, out):
        trainer = build_in_process(trainer_args("ZeroshotCLIP", "ZeroshotCLIP/rn50.yaml", fixture["data_root"],
                                                fixture["clip_path"], tmp_path / out, DATASET, *cache,
                                                "DATALOADER.TEST.BATCH_SIZE", str(batch_size)), open_test=True)
        return trainer

    first, same, other = build(4, "a"), build(4, "b"), build(5, "c")
    assert (first.image_encoder_forwards, same.image_encoder_forwards, other.image_encoder_forwards) == (
        n_test, 0, n_test)
    for trainer in (same, other):
        for cached, images in zip(trainer.test_loader, trainer.dm.test_loader, strict=True):
            assert torch.equal(cached["img"], trainer.image_features(images["img"]))
