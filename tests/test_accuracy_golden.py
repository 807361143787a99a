"""Accuracy-level regression tests: real train.py runs on the tiny CLIP pretrained here.

Random weights give chance accuracy whatever a method computes; these runs use
`MODEL.BACKBONE.NAME tiny-pretrained`, so a change to what a method computes (normalisation,
prompt template, augmentation stream, the sign of a residual) changes its accuracy. Each run is
planned exactly as scripts/<method>/main.sh plans it (official configs; CoOp with fewer epochs)
in the default pipeline (test features cached, training images augmented afresh at every step:
the reference computation bit for bit), on both demo tasks at 16 shots, and must reproduce its
golden per-seed accuracy exactly (the CPU pipeline is deterministic). The goldens are
`accuracy_golden.json` next to this file.

Regenerate them after an intended change of results (and say why in the commit):
    FEWSHOT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_accuracy_golden.py
A new method needs one line in GOLDEN_METHODS, then a regeneration.
"""
import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from datasets.demo_shapes_generate import TASKS, generate
from experiments.plan import plan_runs
from experiments.collect import read_run_result
from tests.engine_helpers import REPO
from trainers.common import tiny_pretrained
from trainers.common.clip_loader import read_state_dict

GOLDEN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "accuracy_golden.json")
UPDATE_ENV = "FEWSHOT_UPDATE_GOLDEN"
SHOTS = 16
SEEDS = (1, 2)
PER_CLASS = (16, 1, 20)  # train, val, test images per class: 120 test images per task
ONE_SEED = (1,)  # methods added later: one seed keeps the module within a few minutes
# planner method -> (train.py overrides beyond its official settings, seeds); one line per method.
GOLDEN_METHODS = {
    "zeroshot": ((), SEEDS),
    "taskres": ((), SEEDS),
    "clip_adapter": ((), SEEDS),
    "coop": (("OPTIM.MAX_EPOCH", "20"), SEEDS),  # 200 official epochs cost minutes on 2 cores; 20 learn
    "tip_adapter": ((), ONE_SEED),
    "tip_adapter_f": ((), ONE_SEED),
    "linear_probe": ((), ONE_SEED),
    "taskres_adapter": ((), ONE_SEED),
    "taskres_image": ((), ONE_SEED),
}
NAMED, UNNAMED = "demo_shapes", "demo_land_use"
PARALLEL_RUNS = 2


def _side():
    return tiny_pretrained.ARCHITECTURE["image_resolution"]


@pytest.fixture(scope="session")
def tiny_clip_weights():
    """The tiny CLIP, built once per machine (the cache outlives the session), or now if missing."""
    return tiny_pretrained.ensure_weights()


def _plan(data_root, runs_root):
    side = _side()
    common = ("MODEL.BACKBONE.NAME", tiny_pretrained.NAME, "INPUT.SIZE", f"({side}, {side})",
              "DATALOADER.NUM_WORKERS", "0")  # the pipeline is the default one
    runs = []
    for dataset in (NAMED, UNNAMED):
        for method, (extra, seeds) in GOLDEN_METHODS.items():
            shots = 0 if method == "zeroshot" else SHOTS
            runs += plan_runs(method, dataset, shots, seeds, runs_root, data_root, extra=(*common, *extra))
    return runs


def _train(run, feature_cache):
    env = dict(os.environ, OMP_NUM_THREADS="1", FEWSHOT_FEATURE_CACHE=feature_cache)
    proc = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *run.args], cwd=REPO, env=env,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return run, read_run_result(run.output_dir).value


def weights_digest(path):
    """sha256 over the tensors (not the file bytes, which depend on the serialiser)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(read_state_dict(path).items()):
        digest.update(key.encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _read_golden():
    with open(GOLDEN_FILE) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def accuracies(tiny_clip_weights, tmp_path_factory):
    """{dataset: {method: {seed: accuracy}}} of every golden run (zero-shot under seed "0")."""
    root = tmp_path_factory.mktemp("golden")
    data_root = str(root / "data")
    for dataset in (NAMED, UNNAMED):
        generate(data_root, _side(), *PER_CLASS, task=TASKS[dataset])
    runs = _plan(data_root, str(root / "runs"))
    with ThreadPoolExecutor(PARALLEL_RUNS) as pool:
        results = list(pool.map(_train, runs, [str(root / "features")] * len(runs)))
    table = {}
    for run, value in results:
        table.setdefault(run.dataset, {}).setdefault(run.method, {})[str(run.seed or 0)] = round(value, 2)
    return table


def test_tiny_clip_is_the_one_the_goldens_were_made_with(tiny_clip_weights):
    if os.environ.get(UPDATE_ENV):
        pytest.skip("regenerating the goldens")
    assert weights_digest(tiny_clip_weights) == _read_golden()["tiny_clip_weights_sha256"], (
        f"the tiny CLIP pretrained on this machine ({tiny_clip_weights}) differs from the one the goldens were "
        f"made with: its settings, the caption data or the float kernels (CPU type, torch version) changed. "
        f"If that is intended, regenerate the goldens with {UPDATE_ENV}=1")


def test_golden_accuracies_reproduce_exactly(accuracies, tiny_clip_weights):
    if os.environ.get(UPDATE_ENV):
        with open(GOLDEN_FILE, "w") as f:
            json.dump({"tiny_clip_weights_sha256": weights_digest(tiny_clip_weights), "accuracies": accuracies},
                      f, indent=2, sort_keys=True)
            f.write("\n")
        pytest.skip(f"wrote {GOLDEN_FILE}; review the diff and commit it")
    golden = _read_golden()["accuracies"]
    for dataset, methods in golden.items():
        for method, seeds in methods.items():
            assert method in GOLDEN_METHODS, f"{method} has goldens but no entry in GOLDEN_METHODS"
    assert accuracies == golden, (
        f"accuracies changed: got {json.dumps(accuracies, sort_keys=True)}; goldens in {GOLDEN_FILE}. If the "
        f"change is intended, regenerate with {UPDATE_ENV}=1 and say why in the commit")


def _mean(values):
    values = list(values.values())
    return sum(values) / len(values)


def test_taskres_at_16_shots_beats_zero_shot(accuracies):
    for dataset in (NAMED, UNNAMED):
        assert _mean(accuracies[dataset]["taskres"]) > accuracies[dataset]["zeroshot"]["0"], dataset


def test_zero_shot_knows_the_named_task_but_not_the_unnamed_one(accuracies):
    chance = 100 / 6
    named, unnamed = accuracies[NAMED]["zeroshot"]["0"], accuracies[UNNAMED]["zeroshot"]["0"]
    assert chance + 20 < named < 95  # above chance, short of saturation: room for few-shot gains
    assert unnamed < chance + 15


def test_on_unnamed_task_text_side_methods_learn_while_clip_adapter_stays_near_the_prior(accuracies):
    task = accuracies[UNNAMED]
    adapter = _mean(task["clip_adapter"])
    assert _mean(task["taskres"]) > adapter + 25
    assert _mean(task["coop"]) > adapter + 25
