"""The enhanced-base command and TaskRes' --enhanced-base checks (tiny real CLIP, real files)."""
import os
import subprocess
import sys

import pytest
import torch

import train
from dassl.utils import load_checkpoint, save_checkpoint
from tests.clip_run_helpers import build_in_process, result, trainer_args, write_fixture_and_clip
from tests.engine_helpers import REPO, run_train
from tests.machine_speed import scaled_timeout
from dassl.utils.errors import UserError
from trainers.taskres import check_enhanced_base_source
from trainers.text_projection import TextProjectionTuning

CONFIG = "TaskRes/adam_lr2e-3_B256_ep100.yaml"
FP32 = ["TRAINER.TaskRes.PREC", "fp32"]
SHOTS = 2
TINY = ["INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "8",
        "DATALOADER.TEST.BATCH_SIZE", "16", "TRAIN.PRINT_FREQ", "1", "OPTIM.LR", "0.01"]


def make_enhanced_base(setup, *extra, check=True):
    command = [sys.executable, "-m", "trainers.enhanced_base",
               "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "oxford_pets.yaml"),
               "--root", setup["data_root"], "--shots", str(SHOTS), "--seed", "1", "--epochs", "2",
               "--output", str(setup["root"] / "strong_base"), *extra,
               "MODEL.BACKBONE.PATH", setup["clip_path"], *TINY]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=scaled_timeout(300))
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("enhanced")
    data_root, clip_path = write_fixture_and_clip(root, "OxfordPets", arch="rn", per_class=8)
    setup = dict(root=root, data_root=data_root, clip_path=clip_path)
    setup["stdout"] = make_enhanced_base(setup).stdout
    setup["path"] = str(root / "strong_base" / "OxfordPets" / f"rn50_{SHOTS}shots" / "model.pth.tar")
    return setup


def taskres(setup, out, *opts, flags=()):
    return trainer_args("TaskRes", CONFIG, setup["data_root"], setup["clip_path"], setup["root"] / out,
                        "OxfordPets", "DATASET.NUM_SHOTS", str(SHOTS), *FP32, *opts, flags=flags)


def test_released_projection_gives_exactly_the_taskres_base(setup):
    plain = build_in_process(taskres(setup, "plain"))
    tuning = build_in_process(trainer_args("TextProjectionTuning", "TextProjectionTuning/rn50.yaml",
                                           setup["data_root"], setup["clip_path"], setup["root"] / "tuning",
                                           "OxfordPets", "DATASET.NUM_SHOTS", str(SHOTS)))
    assert isinstance(tuning, TextProjectionTuning)
    with torch.no_grad():
        torch.testing.assert_close(tuning.projection(tuning.text_embeddings), plain.learner.base_text_features)


def test_command_writes_the_reference_layout_and_round_trips_through_enhanced_base(setup):
    checkpoint = load_checkpoint(setup["path"])
    weight = checkpoint["state_dict"]["weight"]
    assert checkpoint["meta"]["dataset"] == "OxfordPets" and checkpoint["meta"]["shots"] == SHOTS
    assert checkpoint["meta"]["backbone"] == "RN50" and checkpoint["meta"]["seed"] == 1
    plain = build_in_process(taskres(setup, "plain2"))
    assert weight.shape == plain.clip_model.text_projection.t().shape
    assert not torch.allclose(weight, plain.clip_model.text_projection.t())  # tuning moved it

    enhanced = build_in_process(taskres(setup, "enhanced", flags=["--enhanced-base", setup["path"]]))
    assert torch.equal(enhanced.clip_model.text_projection.cpu(), weight.t())
    assert not torch.allclose(enhanced.learner.base_text_features, plain.learner.base_text_features)
    # A second call reuses the finished tuning run.
    assert "Reusing the finished tuning run" in make_enhanced_base(setup).stdout


@pytest.mark.parametrize("field,value,expected", [
    ("backbone", "ViT-B/16", "backbone ViT-B/16 (this run: RN50)"),
    ("dataset", "EuroSAT", "dataset EuroSAT (this run: OxfordPets)"),
    ("shots", 16, f"16 shots (this run: {SHOTS})"),
])
def test_enhanced_base_for_other_settings_is_refused(setup, field, value, expected):
    cfg = train.setup_cfg(train.build_parser().parse_args(taskres(setup, "refused")))
    meta = dict(load_checkpoint(setup["path"])["meta"], **{field: value})
    with pytest.raises(UserError) as error:
        check_enhanced_base_source("some/strong_base/model.pth.tar", meta, cfg)
    assert "some/strong_base/model.pth.tar" in str(error.value) and expected in str(error.value)
    assert "python -m trainers.enhanced_base" in str(error.value)


def test_train_py_reports_a_mismatching_enhanced_base_in_one_message(setup, tmp_path):
    checkpoint = load_checkpoint(setup["path"])
    checkpoint["meta"]["shots"] = 16
    path = save_checkpoint(checkpoint, str(tmp_path), model_name="model.pth.tar")
    proc = run_train(taskres(setup, "refused", flags=["--enhanced-base", path]), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert path in proc.stderr and f"16 shots (this run: {SHOTS})" in proc.stderr


def test_an_imagenet_base_serves_the_imagenet_shift_datasets(setup):
    cfg = train.setup_cfg(train.build_parser().parse_args(taskres(setup, "shift", "DATASET.NAME", "ImageNetSketch")))
    meta = {"backbone": "RN50", "dataset": "ImageNet", "shots": 16, "seed": 1}
    check_enhanced_base_source("imagenet.pth.tar", meta, cfg)  # no error


def test_authors_file_without_meta_loads_and_a_damaged_file_is_the_users(setup, tmp_path):
    weight = load_checkpoint(setup["path"])["state_dict"]["weight"]
    authors = save_checkpoint({"state_dict": {"weight": weight}, "epoch": 50}, str(tmp_path / "a"),
                              model_name="model.pth.tar")
    enhanced = build_in_process(taskres(setup, "authors", flags=["--enhanced-base", authors]))
    assert torch.equal(enhanced.clip_model.text_projection.cpu(), weight.t())

    damaged = tmp_path / "damaged.pth.tar"
    damaged.write_bytes(open(setup["path"], "rb").read()[:100])
    proc = run_train(taskres(setup, "damaged", flags=["--enhanced-base", str(damaged)]), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert str(damaged) in proc.stderr and "Download it again" in proc.stderr
    assert "Delete it and rerun" not in proc.stderr


def test_enhanced_base_taskres_trains_end_to_end(setup):
    out = setup["root"] / "taskres_star"
    run_train(taskres(setup, "taskres_star", "OPTIM.MAX_EPOCH", "1", flags=["--enhanced-base", setup["path"]]))
    assert result(out)["trainable_params"] == load_checkpoint(setup["path"])["state_dict"]["weight"].shape[0] * 6
