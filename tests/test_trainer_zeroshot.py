"""Zero-shot CLIP (single template and 8-template ensemble) through train.py on fixtures."""

import clip
import pytest
import torch

from tests.clip_run_helpers import (FP16_TOLERANCE, ON_CPU, build_in_process, encode_texts, result, run, trainer_args,
                                    write_fixture_and_clip)
from tests.dataset_fixtures import write_fixture
from trainers.common.classifier import l2_normalize
from trainers.common.templates import IMAGENET_TEMPLATES_SELECT

CONFIG = "ZeroshotCLIP/rn50.yaml"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("zeroshot")
    data_root, clip_path = write_fixture_and_clip(root, "OxfordPets", arch="vit")
    write_fixture(data_root, "ImageNet", n_classes=4, per_class=3)
    return dict(root=root, data_root=data_root, clip_path=clip_path)


def test_train_py_run_evaluates_and_matches_the_in_process_trainer(fixtures):
    """Without --eval-only there is nothing to train: the run evaluates and records the result."""
    out = fixtures["root"] / "zs"
    args = [fixtures["data_root"], fixtures["clip_path"], out, "OxfordPets"]
    stdout = run(trainer_args("ZeroshotCLIP", CONFIG, *args))
    fallback = "zero-shot CLIP precision = fp16 needs a CUDA device; running in fp32"
    assert stdout.count(fallback) == (1 if ON_CPU else 0)
    assert "ZeroshotCLIP has nothing to train: evaluating directly" in stdout
    assert "* accuracy:" in stdout
    trainer = build_in_process(trainer_args("ZeroshotCLIP", CONFIG, *args, flags=["--eval-only"]))
    assert trainer.get_model_names() == []  # nothing to save, load or step
    assert trainer.test() == result(out)["accuracy"]


def test_single_template_with_spaces_for_underscores(fixtures):
    trainer = build_in_process(trainer_args("ZeroshotCLIP", CONFIG, fixtures["data_root"],
                                            fixtures["clip_path"], fixtures["root"] / "single", "OxfordPets"))
    names = trainer.dm.dataset.classnames
    assert "american_bulldog" in names
    expected = l2_normalize(encode_texts(trainer.clip_model,
                                    [f"a photo of a {n.replace('_', ' ')}, a type of pet." for n in names]))
    torch.testing.assert_close(trainer.text_features, expected, **FP16_TOLERANCE)


@pytest.mark.parametrize("dataset,own_template", [("OxfordPets", "a photo of a {}, a type of pet."),
                                                  ("ImageNet", None)])
def test_ensemble_normalises_each_template_then_the_mean(fixtures, dataset, own_template):
    trainer = build_in_process(trainer_args("ZeroshotCLIP2", CONFIG, fixtures["data_root"],
                                            fixtures["clip_path"], fixtures["root"] / f"ens_{dataset}", dataset))
    templates = list(IMAGENET_TEMPLATES_SELECT) + ([own_template] if own_template else [])
    name = trainer.dm.dataset.classnames[-1].replace("_", " ")
    per_template = l2_normalize(encode_texts(trainer.clip_model, [t.format(name) for t in templates]))
    torch.testing.assert_close(trainer.text_features[-1], l2_normalize(per_template.mean(0)), **FP16_TOLERANCE)


def test_random_weights_by_name_log_one_line(fixtures, capsys):
    trainer = build_in_process(["--root", fixtures["data_root"], "--seed", "1", "--trainer", "ZeroshotCLIP",
                                "--output-dir", str(fixtures["root"] / "random"), "--eval-only",
                                "DATASET.NAME", "ImageNet", "MODEL.BACKBONE.NAME", "ViT-B/32",
                                "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(224, 224)",
                                "DATALOADER.NUM_WORKERS", "0"])
    assert capsys.readouterr().out.count("CLIP ViT-B/32 gets RANDOM weights") == 1
    assert trainer.text_features.shape == (4, 512)  # ViT-B/32's embedding width
    assert 0 <= trainer.test() <= 100


def test_missing_weights_offline_name_the_url_and_the_path(fixtures, monkeypatch):
    cache = fixtures["root"] / "empty_cache"
    monkeypatch.setenv("CLIP_CACHE_DIR", str(cache))
    monkeypatch.setenv("CLIP_OFFLINE", "1")
    with pytest.raises(RuntimeError) as err:
        build_in_process(["--root", fixtures["data_root"], "--trainer", "ZeroshotCLIP",
                          "--output-dir", str(fixtures["root"] / "offline"), "DATASET.NAME", "ImageNet",
                          "MODEL.BACKBONE.NAME", "RN50", "INPUT.SIZE", "(224, 224)"])
    assert clip.clip._MODELS["RN50"] in str(err.value)
    assert str(cache / "RN50.pt") in str(err.value)


def test_input_size_other_than_clip_resolution_is_refused(fixtures):
    with pytest.raises(ValueError, match=r"INPUT.SIZE = \(64, 64\).*set INPUT.SIZE \(32, 32\)"):
        build_in_process(trainer_args("ZeroshotCLIP", CONFIG, fixtures["data_root"], fixtures["clip_path"],
                                      fixtures["root"] / "size", "OxfordPets", "INPUT.SIZE", "(64, 64)"))
