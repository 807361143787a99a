"""Linear-probe CLIP: the official C search, and train.py end to end with a tiny real CLIP."""
import os

import numpy as np
import pytest
import torch

from dassl.utils import load_checkpoint
from tests.clip_run_helpers import model_folders, result, run, trainer_args, write_fixture_and_clip
from trainers.linear_probe import COARSE_C, classifier_as_linear, search_c


def separable(n_per_class, seed, n_classes=3, dim=5):
    """Gaussian blobs far apart: linearly separable with a wide margin."""
    rng = np.random.RandomState(seed)
    centres = np.eye(n_classes, dim) * 20
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return centres[labels] + rng.randn(len(labels), dim), labels


def test_separable_features_are_separated_perfectly():
    train, val, test = separable(4, 0), separable(2, 1), separable(50, 2)
    clf, chosen, record = search_c(train, val, steps=8)
    assert record["split"] == "val" and len(record["rounds"]) == 8 and len(record["coarse"]) == len(COARSE_C)
    assert record["rounds"][-1]["C"] == chosen
    assert (clf.predict(test[0]) == test[1]).all()
    weight, bias = classifier_as_linear(clf, 3)
    logits = test[0] @ weight.double().numpy().T + bias.double().numpy()
    assert (logits.argmax(1) == test[1]).all()


def test_the_fit_is_float64_whatever_the_features_dtype():
    """float32 features are solved in float64 (scikit-learn would keep float32 and its rounding,
    which differs between CPU types): the same fit as on the float64 copy, bit for bit."""
    train, val = separable(4, 0), separable(2, 1)
    as32 = lambda pair: (pair[0].astype(np.float32), pair[1])  # noqa: E731
    clf32, c32, record32 = search_c(as32(train), as32(val), steps=3)
    clf64, c64, record64 = search_c((train[0].astype(np.float32).astype(np.float64), train[1]),
                                    (val[0].astype(np.float32).astype(np.float64), val[1]), steps=3)
    assert clf32.coef_.dtype == np.float64 and c32 == c64 and record32 == record64
    assert np.array_equal(clf32.coef_, clf64.coef_) and np.array_equal(clf32.intercept_, clf64.intercept_)
    weight, bias = classifier_as_linear(clf32, 3)
    assert weight.dtype == bias.dtype == torch.float64


def test_binary_search_halves_toward_the_better_end():
    train, val = separable(4, 0, n_classes=2), separable(2, 1, n_classes=2)
    _, chosen, record = search_c(train, val, steps=3)
    peak = COARSE_C[int(np.argmax(list(record["coarse"].values())))]
    # Every candidate lies within a factor of 10 of the coarse peak, and ties keep the left (smaller) C.
    assert all(peak / 10 - 1e-12 <= r["C"] <= peak * 10 * (1 + 1e-12) for r in record["rounds"])
    assert record["rounds"][0]["C"] == pytest.approx(peak / 10)


def test_linear_probe_through_train_py_and_eval_only(tmp_path):
    data_root, clip_path = write_fixture_and_clip(tmp_path, "DescribableTextures", per_class=8)
    opts = ["DATASET.NUM_SHOTS", "4", "TRAINER.LINEAR_PROBE.SEARCH_STEPS", "2"]
    out = tmp_path / "lp"
    stdout = run(trainer_args("LinearProbeCLIP", "LinearProbeCLIP/rn50.yaml", data_root, clip_path, out,
                              "DescribableTextures", *opts))
    assert "chosen on the few-shot val (" in stdout
    record = result(out)
    assert record["search"]["split"] == "few-shot val" and record["C"] == record["search"]["rounds"][-1]["C"]
    assert model_folders(out) == ["linear_probe"]
    state = load_checkpoint(os.path.join(out, "linear_probe", "model.pth.tar-1"))["state_dict"]
    assert record["trainable_params"] == state["weight"].numel() + state["bias"].numel()
    assert state["weight"].dtype == state["bias"].dtype == torch.float64
    # the val split the C search ran on, as counted before the search
    assert record["val_split"]["images"] == record["search"]["images"]
    assert record["val_split"]["min_per_class"] >= record["val_split"]["required_per_class"] == 1
    eval_out = tmp_path / "lp_eval"
    run(trainer_args("LinearProbeCLIP", "LinearProbeCLIP/rn50.yaml", data_root, clip_path, eval_out,
                     "DescribableTextures", *opts, flags=["--eval-only", "--model-dir", str(out), "--load-epoch", "1"]))
    assert result(eval_out)["accuracy"] == record["accuracy"]
