"""The experiment scripts end to end: real train.py runs of the tiny CLIP on fixture datasets.

Each script is run the way a user types it (`bash scripts/taskres/main.sh dtd 1 ...`); the
runs are short (2 epochs, 32 px) and the output trees are read back with parse_results.py.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.dataset_fixtures import write_fixture
from tests.tiny_clip import save_tiny_clip
from tests.machine_speed import scaled_timeout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKRES_1SHOT = "dtd/TaskRes/adam_lr2e-3_B256_ep100_1shots"
TASKRES_2SHOTS = "dtd/TaskRes/adam_lr2e-3_B256_ep100_2shots"


def tiny_overrides(clip_path, epochs=2):
    return ["OPTIM.MAX_EPOCH", str(epochs), "MODEL.BACKBONE.PATH", str(clip_path),
            "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0"]


def script_env(data, output, **extra):
    env = dict(os.environ, PYTHON=sys.executable, DATA=str(data), OUTPUT=str(output))
    for key in ("SEEDS", "FORCE", "CFG", "ENHANCED_BASE", "TARGETS", "DATASETS", "SHOTS",
                "TRAINER", "NCTX", "CSC", "CTP", "LAUNCHER", "SWEEP_OPTS", "FAST"):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_script(script, *args, env, cwd=REPO, check=True):
    proc = subprocess.run(["bash", script, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=scaled_timeout(300))
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def read_result(run_dir):
    with open(os.path.join(run_dir, "result.json")) as f:
        return json.load(f)


def logs_of(run_dir):
    return sorted(n for n in os.listdir(run_dir) if n.startswith("log.txt"))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Fixture datasets, a tiny CLIP, and TaskRes trained by main.sh: 2 shot counts x 2 seeds."""
    base = tmp_path_factory.mktemp("scripts")
    data = base / "data"
    write_fixture(data, "DescribableTextures")
    clip_path = save_tiny_clip(base)
    output = base / "output"
    env = script_env(data, output, SEEDS="1 2")
    runs = {}
    for shots in (1, 2):
        # typed as in the README, from the repository root
        runs[shots] = run_script("scripts/taskres/main.sh", "dtd", shots,
                                 *tiny_overrides(clip_path), env=env)
    return dict(base=base, data=data, clip=clip_path, output=output, env=env, runs=runs)


def test_main_sh_writes_the_reference_tree(world):
    output = world["output"]
    for setting, shots in ((TASKRES_1SHOT, 1), (TASKRES_2SHOTS, 2)):
        assert sorted(os.listdir(output / setting)) == ["seed1", "seed2"]
        for seed in (1, 2):
            run = output / setting / f"seed{seed}"
            assert (run / "log.txt").is_file() and (run / "prompt_learner").is_dir()
            record = read_result(run)
            assert (record["dataset"], record["num_shots"], record["seed"]) == \
                ("DescribableTextures", shots, seed)
            log = (run / "log.txt").read_text()
            assert "RESIDUAL_SCALE: 0.5" in log  # alpha chosen per dataset by the planner
            assert "Finish training" in log
        assert f"[run] {output}/{setting}/seed1" in world["runs"][shots].stdout

    table = subprocess.run([sys.executable, "parse_results.py", str(output), "--table",
                            "--datasets", "dtd", "--seeds", "1", "2"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout
    accs = [read_result(output / TASKRES_2SHOTS / f"seed{s}")["accuracy"] for s in (1, 2)]
    mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / 2
    assert f"| {mean:.2f} ± {std:.2f} (2) " in table
    assert "## TaskRes: " in table


def test_finished_runs_are_skipped(world):
    output = world["output"]
    before = {s: logs_of(output / TASKRES_1SHOT / f"seed{s}") for s in (1, 2)}
    proc = run_script("scripts/taskres/main.sh", "dtd", 1, *tiny_overrides(world["clip"]),
                      env=world["env"])
    for s in (1, 2):
        assert f"[skip] {output}/{TASKRES_1SHOT}/seed{s}: finished" in proc.stdout
        assert logs_of(output / TASKRES_1SHOT / f"seed{s}") == before[s]  # train.py not run


def test_fast_request_never_reuses_an_exact_run(world):
    """FAST=1 adds the fast pipeline to the recorded request: the finished exact run is not
    silently reused for it; a non-number SHOTS gets the script's own usage line."""
    output = world["output"]
    before = {s: logs_of(output / TASKRES_1SHOT / f"seed{s}") for s in (1, 2)}
    proc = run_script("scripts/taskres/main.sh", "dtd", 1, *tiny_overrides(world["clip"]),
                      env=dict(world["env"], FAST="1"), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "finished with other settings" in proc.stderr
    assert "'TRAIN.FEATURE_CACHE.PIPELINE', 'fast'" in proc.stderr
    assert {s: logs_of(output / TASKRES_1SHOT / f"seed{s}") for s in (1, 2)} == before
    proc = run_script("scripts/taskres/main.sh", "dtd", "x", env=world["env"], check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("error: usage: bash scripts/taskres/main.sh DATASET SHOTS "
                           "[KEY VALUE ...]\n")


def test_force_reruns_and_keeps_the_old_folder(world, tmp_path):
    env = dict(world["env"], SEEDS="1", FORCE="1", OUTPUT=str(world["output"]))
    setting = world["output"] / TASKRES_2SHOTS
    old = read_result(setting / "seed1")
    proc = run_script(f"{REPO}/scripts/taskres/main.sh", "dtd", 2, *tiny_overrides(world["clip"]),
                      env=env, cwd=tmp_path)
    moved = [n for n in os.listdir(setting) if n.startswith("seed1.replaced-")]
    assert len(moved) == 1 and f"moved aside to {setting}/{moved[0]}" in proc.stdout
    assert read_result(setting / moved[0]) == old  # nothing lost
    new = read_result(setting / "seed1")
    assert new["finished"] >= old["finished"]
    assert new["accuracy"] == old["accuracy"]  # same seed, same result
    # the aggregator ignores the archived folder
    out = subprocess.run([sys.executable, "parse_results.py", str(setting)], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert len(re.findall(r"^file: ", out, re.M)) == 2


def test_killed_run_resumes_on_the_next_call(world, tmp_path):
    output = tmp_path / "output"
    env = script_env(world["data"], output, SEEDS="3")
    overrides = [*tiny_overrides(world["clip"], epochs=10), "TRAIN.CHECKPOINT_FREQ", "1"]
    run = output / TASKRES_1SHOT / "seed3"
    proc = subprocess.Popen(["bash", "scripts/taskres/main.sh", "dtd", "1", *overrides],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    pointer = run / "prompt_learner" / "checkpoint"  # written once a checkpoint is complete
    deadline = time.time() + 120
    while not pointer.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # the script and its train.py
    proc.wait()
    assert pointer.exists() and not (run / "result.json").exists()

    resumed = run_script("scripts/taskres/main.sh", "dtd", 1, *overrides, env=env)
    assert f"[resume] {output}/{TASKRES_1SHOT}/seed3: unfinished" in resumed.stdout
    assert read_result(run)["epochs"] == 10
    logs = logs_of(run)
    assert len(logs) == 2 and logs[0] == "log.txt"  # the killed run's log is kept
    assert "Finish training" not in (run / "log.txt").read_text()
    second = (run / logs[1]).read_text()
    assert "will resume training" in second and "epoch [1/10]" not in second
    assert "epoch [10/10]" in second and "Finish training" in second


def test_eval_sh_tests_the_trained_model(world):
    env = dict(world["env"], SEEDS="1")
    proc = run_script("scripts/taskres/eval.sh", "dtd", 1, *tiny_overrides(world["clip"]),
                      env=env)
    trained = world["output"] / TASKRES_1SHOT / "seed1"
    evaluated = world["output"] / "eval" / TASKRES_1SHOT / "seed1"
    assert f"[run] {evaluated}" in proc.stdout
    log = (evaluated / "log.txt").read_text()
    assert "model.pth.tar-2" in log and "Finish training" not in log
    # the same model on the same test set gives the training run's final accuracy
    assert read_result(evaluated)["accuracy"] == read_result(trained)["accuracy"]


def test_sweep_checks_the_whole_grid_first_then_runs_it(world, tmp_path):
    output = tmp_path / "output"
    env = script_env(world["data"], output, DATASETS="dtd nosuch")
    overrides = ["MODEL.BACKBONE.PATH", world["clip"], "INPUT.SIZE", "(32, 32)",
                 "DATALOADER.NUM_WORKERS", "0"]
    proc = run_script("scripts/sweep.sh", "zeroshot", *overrides, env=env, check=False)
    assert proc.returncode == 2  # the grid is checked before its first run: nothing started
    assert "unknown dataset 'nosuch'" in proc.stderr and "nosuch 0 shots" in proc.stderr
    assert "none was started" in proc.stderr and "Traceback" not in proc.stderr
    assert not output.exists() or not any(output.iterdir())
    zs = output / "dtd/ZeroshotCLIP/rn50_0shots"
    run_script("scripts/sweep.sh", "zeroshot", *overrides, env=dict(env, DATASETS="dtd"))
    assert read_result(zs)["trainer"] == "ZeroshotCLIP" and not (zs / "seed1").exists()
    again = run_script("scripts/sweep.sh", "zeroshot", *overrides,
                       env=dict(env, DATASETS="dtd"))
    assert f"[skip] {zs}: finished" in again.stdout
