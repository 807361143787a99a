"""The base-to-new commands as a user runs them: scripts/base2new.sh (and a per-method shorthand)
on the demo data with the tiny pretrained CLIP, resuming by skipping finished runs, the table
with the published numbers, the cross-dataset table, and every refused input as one message."""
import json
import os
import subprocess
import sys

import pytest

from datasets.demo_shapes_generate import TASKS, generate
from tests.engine_helpers import REPO
from tests.test_scripts import script_env
from trainers.common import tiny_pretrained

# Whole train.py runs: minutes on a loaded 2-core machine, beyond the suite's 600 s default.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


TINY = ("MODEL.BACKBONE.NAME", tiny_pretrained.NAME, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0")


def run_script(script, *args, env, check=True):
    """bash SCRIPT ARGS from the repository root (a generous limit: the machine may be shared)."""
    proc = subprocess.run(["bash", script, *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1500)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _refused(proc, *phrases):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tiny_pretrained.ensure_weights()
    root = tmp_path_factory.mktemp("b2n_scripts")
    side = tiny_pretrained.ARCHITECTURE["image_resolution"]
    generate(str(root / "data"), side, 16, 1, 8, task=TASKS["demo_shapes"])
    return root


def test_kgcoop_and_zeroshot_base2new_then_the_table(demo):
    env = script_env(demo / "data", demo / "out", SEEDS="1")
    kg = run_script("scripts/kgcoop/base2new.sh", "demo_shapes", *TINY, "OPTIM.MAX_EPOCH", "2", env=env)
    run_script("scripts/base2new.sh", "zeroshot", "demo_shapes", *TINY, env=env)
    assert kg.stdout.count("[run]") == 2  # train on base, test on new
    tree = demo / "out" / "base2new"
    setting = "KgCoOp/vit_b16_ep100_ctxv1_16shots/seed1"
    with open(tree / "train_base" / "demo_shapes" / setting / "result.json") as f:
        trained = json.load(f)
    with open(tree / "test_new" / "demo_shapes" / setting / "result.json") as f:
        tested = json.load(f)
    assert (trained["subsample_classes"], tested["subsample_classes"]) == ("base", "new")
    assert trained["num_classes"] == tested["num_classes"] == 3

    again = run_script("scripts/base2new.sh", "kgcoop", "demo_shapes", *TINY, "OPTIM.MAX_EPOCH", "2", env=env)
    assert "[run]" not in again.stdout and again.stdout.count("[skip]") == 2

    table = subprocess.run([sys.executable, "parse_results.py", str(tree), "--base2new", "--datasets",
                            "demo_shapes", "--seeds", "1"], cwd=REPO, capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    assert "## KgCoOp, 16 shots: base-to-new accuracy (%)" in table.stdout
    assert "## Zero-shot CLIP, 0 shots" in table.stdout
    assert "| KgCoOp (paper)" in table.stdout and "| PromptSRC (paper)" in table.stdout
    assert "Yao et al., Knowledge-guided Context Optimization (KgCoOp), CVPR 2023" in table.stdout

    # The whole-protocol sweep plans the same folders: all finished, nothing to submit.
    grid = ["--protocol", "base2new", "--datasets", "demo_shapes", "--seeds", "1", "--data", str(demo / "data"),
            "--dry-run"]
    done = subprocess.run([sys.executable, "-m", "experiments", *grid, "--methods", "kgcoop", "--output",
                           str(demo / "out"), "--", *TINY, "OPTIM.MAX_EPOCH", "2"], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert "2 runs: 2 done; to submit: 0" in done.stdout
    fresh = subprocess.run([sys.executable, "-m", "experiments", *grid, "--methods", "kgcoop", "zeroshot",
                            "--output", str(demo / "fresh"), "--", *TINY], cwd=REPO, capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    # first round: KgCoOp's base training (its test waits for it) and zero-shot on both halves
    assert "3 runs: 3 new; to submit: 3" in fresh.stdout
    assert "train_base/demo_shapes/KgCoOp" in fresh.stdout and "test_new/demo_shapes/ZeroshotCLIP" in fresh.stdout


def test_refused_inputs_get_one_message(demo, tmp_path):
    env = script_env(demo / "data", tmp_path / "out", SEEDS="1")
    _refused(run_script("scripts/base2new.sh", "taskres", "demo_shapes", env=env, check=False),
             "taskres learns weights for each training class", "cocoop")
    _refused(run_script("scripts/base2new.sh", "coop", "imagenet_a", env=env, check=False),
             "imagenet_a is a test-only dataset")
    _refused(run_script("scripts/base2new.sh", "coop", "demo_shapes", "DATASET.SUBSAMPLE_CLASSES", "all",
                        env=env, check=False), "DATASET.SUBSAMPLE_CLASSES is set by base-to-new itself")
    _refused(run_script("scripts/cocoop/base2new.sh", "demo_shapes", env=dict(env, STAGE="test"), check=False),
             "has not finished training", "bash scripts/base2new.sh cocoop demo_shapes")


@pytest.mark.parametrize("trained, testing, phrase", [
    ("all", "new", "was trained on all classes of DemoShapes"),
    ("base", "all", "was trained on the base classes of DemoShapes only"),
])
def test_train_py_refuses_a_test_on_the_wrong_class_split(demo, tmp_path, trained, testing, phrase):
    model = tmp_path / "model"
    model.mkdir()
    (model / "result.json").write_text(json.dumps({"dataset": "DemoShapes", "subsample_classes": trained}))
    proc = subprocess.run([sys.executable, "train.py", "--root", str(demo / "data"), "--trainer", "CoCoOp",
                           "--dataset-config-file", "configs/datasets/demo_shapes.yaml", "--output-dir",
                           str(tmp_path / "test"), "--eval-only", "--model-dir", str(model),
                           "DATASET.SUBSAMPLE_CLASSES", testing], cwd=REPO, capture_output=True, text=True)
    _refused(proc, phrase)


def test_xd_table_lists_the_published_numbers(tmp_path):
    """A cross-dataset tree (result files as train.py writes them): ours beside the paper's."""
    def write(path, dataset, accuracy, eval_only):
        path.mkdir(parents=True)
        record = {"accuracy": accuracy, "dataset": dataset, "trainer": "CoCoOp", "epochs": 10,
                  "eval_only": eval_only, "num_shots": 16, "seed": 1}
        (path / "result.json").write_text(json.dumps(record))
    setting = os.path.join("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1_16shots", "seed1")
    write(tmp_path / "imagenet" / setting, "imagenet", 70.0, False)
    write(tmp_path / "xd" / "caltech101" / setting, "caltech101", 90.0, True)
    proc = subprocess.run([sys.executable, "parse_results.py", str(tmp_path), "--xd", "--seeds", "1",
                           "--allow-partial"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "## Cross-dataset transfer" in proc.stdout
    assert "| CoCoOp (paper)" in proc.stdout and "94.43" in proc.stdout and "-4.43" in proc.stdout
