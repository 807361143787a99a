"""Accuracy goldens of LP++, CLAP, GDA and ProKeR: real train.py runs on the tiny CLIP
pretrained here, planned as scripts/main.sh plans them (official configs), on both demo tasks
at 16 shots, one seed. Each must reproduce its golden accuracy exactly and beat zero-shot CLIP
(run here too, with the same tiny CLIP) on both tasks.

Regenerate after an intended change of results (and say why in the commit):
    FEWSHOT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_cached.py
"""
import os

import pytest

from tests.test_accuracy_golden import (NAMED, UNNAMED, check_exact_golden, golden_accuracies,
                                        tiny_clip_weights)  # noqa: F401 (fixture)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # eight train.py runs; slow on a loaded 2-core machine
GOLDEN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_cached.json")
SEED = 1
# planner method -> train.py overrides beyond its official settings
GOLDEN_METHODS = {
    "zeroshot": (),  # the bar to beat, with the tiny CLIP of this machine
    "lp_plus_plus": (),
    "clap": (),
    "gda": (),
    "proker": (),
}


@pytest.fixture(scope="module")
def accuracies(tiny_clip_weights, tmp_path_factory):  # noqa: F811
    """{dataset: {method: {seed: accuracy}}} of every golden run (zero-shot under seed "0")."""
    return golden_accuracies(tmp_path_factory.mktemp("golden_cached"),
                             {method: (extra, (SEED,)) for method, extra in GOLDEN_METHODS.items()})


def test_golden_cached_accuracies_reproduce_exactly(accuracies, tiny_clip_weights):  # noqa: F811
    check_exact_golden(accuracies, GOLDEN_FILE, tiny_clip_weights)


def test_every_cached_method_beats_zero_shot_at_16_shots(accuracies):
    for dataset in (NAMED, UNNAMED):
        for method in GOLDEN_METHODS:
            if method != "zeroshot":
                assert accuracies[dataset][method][str(SEED)] > accuracies[dataset]["zeroshot"]["0"], (dataset, method)
