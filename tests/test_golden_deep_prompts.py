"""Accuracy goldens of the deep-prompt methods (MaPLe, PromptSRC) on the tiny ViT CLIP pretrained
here (`MODEL.BACKBONE.NAME tiny-vit-pretrained`), in the base-to-new protocol on both demo tasks:
trained on the base half of the classes (16 shots, seed 1), tested on base and on new, beside
zero-shot CLIP on both halves. On DemoShapes the tiny CLIP knows the class names (zero-shot is
high on both halves; the new-class accuracies show what the prompts keep); on DemoLandUse it
does not (zero-shot near chance), so the prompts must learn the base classes: there they must
be clearly above zero-shot. Real train.py runs at the official base-to-new configs; the only
overrides are the tiny model's input size, DATALOADER.NUM_WORKERS 0 and, for PromptSRC, 10
epochs instead of 20 with the Gaussian aggregation's mean moved with them (GPA_MEAN 8, std 1).
The CPU runs are deterministic, so every accuracy must reproduce exactly.

Regenerate after an intended change of results (and say why in the commit):
    FEWSHOT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden_deep_prompts.py
"""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from dassl.utils import read_json
from datasets.demo_shapes_generate import TASKS, generate
from tests.engine_helpers import REPO
from tests.test_accuracy_golden import PER_CLASS, SHOTS, check_exact_golden, tiny_vit_weights  # noqa: F401
from trainers.common import tiny_pretrained

GOLDEN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_deep_prompts.json")
NAMED, UNNAMED = "demo_shapes", "demo_land_use"
SEED = 1
MARGIN = 20.0  # points above zero-shot on the unnamed task's base classes
PARALLEL_RUNS = 4
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]  # a dozen train.py runs
# trainer -> (config, overrides beyond the tiny model's, epochs)
METHODS = {
    "MaPLe": ("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", (), 5),
    "PromptSRC": ("PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
                  ("OPTIM.MAX_EPOCH", "10", "TRAINER.PROMPTSRC.GPA_MEAN", "8"), 10),
}


def _side():
    return tiny_pretrained.VIT_ARCHITECTURE["image_resolution"]


def _common(data_root, out, trainer, config, subsample, dataset, flags=()):
    return ["--root", data_root, "--seed", str(SEED), "--trainer", trainer, "--output-dir", out,
            "--config-file", os.path.join(REPO, "configs", "trainers", config),
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", f"{dataset}.yaml"), *flags,
            "MODEL.BACKBONE.NAME", tiny_pretrained.VIT_NAME, "INPUT.SIZE", f"({_side()}, {_side()})",
            "DATALOADER.NUM_WORKERS", "0", "DATASET.SUBSAMPLE_CLASSES", subsample]


def _run(args, feature_cache):
    env = dict(os.environ, OMP_NUM_THREADS="1", FEWSHOT_FEATURE_CACHE=feature_cache)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:]
    out = args[args.index("--output-dir") + 1]
    return round(read_json(os.path.join(out, "result.json"))["accuracy"], 2)


@pytest.fixture(scope="module")
def accuracies(tiny_vit_weights, tmp_path_factory):
    """{dataset: {"zeroshot"|trainer: {"base": accuracy, "new": accuracy}}}."""
    root = tmp_path_factory.mktemp("golden_deep")
    data_root, runs, cache = str(root / "data"), root / "runs", str(root / "features")
    for dataset in (NAMED, UNNAMED):
        generate(data_root, _side(), *PER_CLASS, task=TASKS[dataset])

    def zeroshot(dataset, subsample):
        out = str(runs / dataset / f"zeroshot_{subsample}")
        args = _common(data_root, out, "ZeroshotCLIP", "ZeroshotCLIP/rn50.yaml", subsample, dataset,
                       flags=("--eval-only",))
        return _run(args + ["DATASET.NUM_SHOTS", "0", "OPTIM.MAX_EPOCH", "0"], cache)

    def method(job):
        dataset, trainer = job
        config, extra, epochs = METHODS[trainer]
        base = str(runs / dataset / trainer)
        train = _common(data_root, base, trainer, config, "base", dataset)
        accuracy = {"base": _run(train + ["DATASET.NUM_SHOTS", str(SHOTS), *extra], cache)}
        test = _common(data_root, str(runs / dataset / f"{trainer}_new"), trainer, config, "new", dataset,
                       flags=("--eval-only", "--model-dir", base, "--load-epoch", str(epochs)))
        accuracy["new"] = _run(test + ["DATASET.NUM_SHOTS", str(SHOTS), *extra], cache)
        return dataset, trainer, accuracy

    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        methods = pool.map(method, [(d, t) for d in (NAMED, UNNAMED) for t in METHODS])
        zero = {(d, s): pool.submit(zeroshot, d, s) for d in (NAMED, UNNAMED) for s in ("base", "new")}
        table = {d: {"zeroshot": {s: zero[d, s].result() for s in ("base", "new")}} for d in (NAMED, UNNAMED)}
        for dataset, trainer, accuracy in methods:
            table[dataset][trainer] = accuracy
    return table


def test_deep_prompt_accuracies_reproduce_and_learn_the_base_classes(accuracies, tiny_vit_weights):
    named, unnamed = accuracies[NAMED], accuracies[UNNAMED]
    assert min(named["zeroshot"].values()) > 100 / 3 + 10  # the tiny ViT knows the shape names
    assert max(unnamed["zeroshot"].values()) < 100 / 3 + 15  # ... but not the land-use ones
    for trainer in METHODS:
        assert unnamed[trainer]["base"] >= unnamed["zeroshot"]["base"] + MARGIN, (trainer, accuracies)
        assert named[trainer]["base"] >= named["zeroshot"]["base"], (trainer, accuracies)
    check_exact_golden(accuracies, GOLDEN_FILE, tiny_vit_weights)
