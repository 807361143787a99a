"""The sweep launcher on one machine (`python -m experiments --launcher local`), end to end: real
run-executor jobs running real train.py processes of the tiny CLIP on fixture datasets.

The reference is `scripts/taskres/main.sh` run sequentially on the same grid: the sweep must
make the same output tree (plus one sweep.log per run) with the same results, skip finished runs
on a second invocation, report a failing job with its log without stopping the others, and
rerun only that job once it is fixed. Both use the frozen-feature cache, each its own: the
sweep's parallel jobs share theirs (the two first runs of a dataset need the same test
features at the same time), main.sh builds its cache one run after the other.
"""
import json
import os
import re
import subprocess
import sys

import pytest
import torch

from tests.dataset_fixtures import write_fixture
from tests.tiny_clip import save_tiny_clip
from tests.machine_speed import scaled_timeout
from trainers.common import feature_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASETS = ("dtd", "eurosat")
FIXTURES = {"dtd": "DescribableTextures", "eurosat": "EuroSAT", "caltech101": "Caltech101"}
SHOTS = ("1", "2")
SEEDS = ("1", "2")


def tiny_overrides(clip_path):
    return ["OPTIM.MAX_EPOCH", "1", "MODEL.BACKBONE.PATH", str(clip_path),
            "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0"]


def clean_env(base, **extra):
    """One thread per process for every run (sweep and main.sh alike), a private feature
    cache, and none of the scripts' settings leaking in from the caller."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable,
               FEWSHOT_FEATURE_CACHE=str(base / "feature_cache"))
    for key in ("SEEDS", "FORCE", "CFG", "ENHANCED_BASE", "DATASETS", "SHOTS", "OUTPUT",
                "DATA", "CUDA_VISIBLE_DEVICES", "LAUNCHER", "SWEEP_OPTS", "FAST"):
        env.pop(key, None)
    env.update(extra)
    return env


def run_sweep(*args, env, check=True):
    proc = subprocess.run([sys.executable, "-m", "experiments", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=scaled_timeout(600))
    if check and proc.returncode != 0:
        raise AssertionError(f"sweep failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def tree(root):
    """Every file below `root` (relative paths), without the launcher's hidden job folder."""
    files = set()
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files |= {os.path.relpath(os.path.join(folder, n), root) for n in names}
    return files


def read_result(path):
    with open(path) as f:
        record = json.load(f)
    record.pop("finished")  # a time stamp
    record.pop("cost")  # wall time and memory differ run to run
    return record


def markers(log_path):
    """[(event, {field: value})] of a run's sweep.log."""
    out = []
    with open(log_path) as f:
        for line in f:
            if line.startswith("[sweep] "):
                event, *pairs = line[len("[sweep] "):].split()
                out.append((event, dict(p.split("=", 1) for p in pairs)))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The same grid (2 datasets x 2 shots x 2 seeds, TaskRes, 1 epoch) run twice: by main.sh
    one run after the other, and by the sweep with 2 CPU workers."""
    base = tmp_path_factory.mktemp("sweep")
    data = base / "data"
    for name in DATASETS:
        write_fixture(data, FIXTURES[name])
    clip_path = save_tiny_clip(base)
    env = clean_env(base)
    overrides = [*tiny_overrides(clip_path), "TRAIN.FEATURE_CACHE.PIPELINE", "fast"]

    reference = base / "main_sh"
    for dataset in DATASETS:
        for shots in SHOTS:
            subprocess.run(["bash", "scripts/taskres/main.sh", dataset, shots, *overrides],
                           cwd=REPO, check=True, capture_output=True, timeout=scaled_timeout(600),
                           env=dict(env, DATA=str(data), OUTPUT=str(reference),
                                    SEEDS=" ".join(SEEDS),
                                    FEWSHOT_FEATURE_CACHE=str(base / "cache_main_sh")))
    output = base / "sweep"
    grid = ["--methods", "taskres", "--datasets", *DATASETS, "--shots", *SHOTS,
            "--seeds", *SEEDS, "--data", data]
    workers = ["--gpus", "none", "--workers", "2"]
    args = [*grid, "--output", output, *workers, "--", *overrides]
    cache = base / "cache_sweep"
    first = run_sweep(*args, env=dict(env, FEWSHOT_FEATURE_CACHE=str(cache)))
    return dict(base=base, data=data, clip=clip_path, env=env, reference=reference,
                output=output, grid=grid, workers=workers, args=args, first=first, cache=cache)


def run_dirs(root):
    return sorted(os.path.dirname(p) for p in tree(root) if p.endswith("result.json"))


def test_sweep_makes_the_main_sh_tree_with_the_same_results(world):
    ref, out = world["reference"], world["output"]
    runs = run_dirs(ref)
    assert len(runs) == len(DATASETS) * len(SHOTS) * len(SEEDS)
    # the same files, plus the sweep's console log next to each run
    assert tree(out) == tree(ref) | {os.path.join(r, "sweep.log") for r in runs}
    for run in runs:
        assert read_result(out / run / "result.json") == read_result(ref / run / "result.json")
    assert "8 runs: 8 new; to submit: 8" in world["first"].stdout
    assert "[sweep] finished: 8 done, 0 failed" in world["first"].stdout


def test_two_workers_ran_at_once_without_gpus(world):
    spans = []
    for run in run_dirs(world["output"]):
        events = markers(world["output"] / run / "sweep.log")
        assert [e for e, _ in events] == ["start", "exit"]
        (_, start), (_, end) = events
        assert start["launcher"] == "local" and start["gpus"] == "-"  # CPU workers see no GPU
        assert end["code"] == "0"
        spans.append((start["time"], end["time"]))
    spans.sort()
    # with 2 slots the first two runs start together: the second starts before the first ends
    assert spans[1][0] < spans[0][1]
    assert max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans) == 2  # never 3


ENCODING = re.compile(r"Feature cache: encoding (\d+) of \d+ (?:test|train) images")
FOUND = re.compile(r"Feature cache: all \d+ (?:test|train) images found")


def test_parallel_runs_share_the_feature_cache(world):
    """Equal results with main.sh (first test) show that the shared cache gave every run the
    right features. Here: the cache is intact (no temp or lock file left), every encoding was
    kept, and the test set, which the 4 runs of a dataset share, was encoded once. Training
    subsets of two concurrent runs (other seed or shots) differ but may overlap; the cache may
    then encode the overlap twice, which is only harmless if both copies are equal."""
    logs = [(world["output"] / r / "sweep.log").read_text() for r in run_dirs(world["output"])]
    encoded = 0
    for log in logs:
        assert len(ENCODING.findall(log)) + len(FOUND.findall(log)) == 2, log[-2000:]  # test, train
        encoded += sum(int(n) for n in ENCODING.findall(log))
    assert sum(log.count("test images found") for log in logs) >= len(DATASETS) * 3

    stored = 0
    for folder, _, names in os.walk(world["cache"]):
        assert not [n for n in names if n.endswith(".tmp") or n.startswith(".lock-")], names
        rows, train_views = {}, False
        for name in names:
            if name.endswith(feature_cache.SHARD_SUFFIX):
                path = os.path.join(folder, name)
                header = feature_cache.read_shard_header(path)  # raises on a damaged shard
                features = feature_cache.read_shard_features(path, header)
                train_views = "RandomResizedCrop" in header["description"]["transform"]
                for digest, row in zip(header["digests"], features):
                    rows.setdefault(digest, []).append(row)
                stored += len(header["digests"])
        for copies in rows.values():
            assert all(torch.equal(copies[0], c) for c in copies[1:])
        if rows and not train_views:
            assert all(len(copies) == 1 for copies in rows.values()), folder
    assert stored == encoded > 0


def test_progress_and_table_are_printed(world):
    first = world["first"]
    assert "done=8 running=0 failed=0 remaining=0" in first.stderr  # the progress bar
    assert "--table --datasets dtd eurosat --shots 1 2 --seeds 1 2" in first.stdout
    accs = [read_result(world["output"] / "dtd/TaskRes/adam_lr2e-3_B256_ep100_2shots" /
                        f"seed{s}" / "result.json")["accuracy"] for s in SEEDS]
    mean, std = sum(accs) / 2, abs(accs[0] - accs[1]) / 2
    assert f"| {mean:.2f} ± {std:.2f} (2) " in first.stdout


def test_second_invocation_submits_nothing(world):
    out = world["output"]
    logs = {r: (out / r / "sweep.log").read_text() for r in run_dirs(out)}
    again = run_sweep(*world["args"], env=world["env"])
    assert "8 runs: 8 done; to submit: 0" in again.stdout
    assert "[sweep] nothing to submit" in again.stdout
    assert {r: (out / r / "sweep.log").read_text() for r in run_dirs(out)} == logs
    assert not (out / ".sweep").exists()  # the local launcher needs no job files


def test_dry_run_prints_the_commands_and_submits_nothing(world, tmp_path):
    proc = run_sweep(*world["grid"], "--output", tmp_path / "out", *world["workers"],
                     "--dry-run", "--", *tiny_overrides(world["clip"]), env=world["env"])
    assert "to submit: 8" in proc.stdout and "dry run, nothing submitted" in proc.stdout
    assert "local: 2 job(s) at a time: cpu 0, cpu 1" in proc.stdout
    assert proc.stdout.count(f"{REPO}/train.py --root {world['data']} --seed") == 8
    assert not (tmp_path / "out").exists()
    fast = run_sweep(*world["grid"], "--output", tmp_path / "out", "--fast", "--dry-run",
                     env=world["env"])
    assert fast.stdout.count("TRAIN.FEATURE_CACHE.PIPELINE fast") == 8


def test_failed_job_is_reported_and_rerun_alone_once_fixed(world, tmp_path):
    """One of Caltech101's images is missing (its folder is there, so the grid check before the
    start passes): its job fails, DTD's (running beside it) finishes; the report names the
    failed run's log; with the data in place only that run runs again. The two GPU slots give
    each job its own CUDA_VISIBLE_DEVICES (no GPU needed to check)."""
    data = tmp_path / "data"
    write_fixture(data, FIXTURES["dtd"])
    write_fixture(data, FIXTURES["caltech101"])
    missing = next((data / "caltech-101").rglob("*.jpg"))
    image = missing.read_bytes()
    missing.unlink()
    out = tmp_path / "out"
    grid = ["--methods", "taskres", "--datasets", "dtd", "caltech101", "--shots", "1",
            "--seeds", "3", "--data", data, "--output", out]
    args = [*grid, "--gpus", "0,1", "--", *tiny_overrides(world["clip"])]
    failed = run_sweep(*args, env=world["env"], check=False)
    assert failed.returncode == 1
    bad = out / "caltech101/TaskRes/adam_lr2e-3_B256_ep100_1shots/seed3"
    good = out / "dtd/TaskRes/adam_lr2e-3_B256_ep100_1shots/seed3"
    assert (good / "result.json").is_file() and not (bad / "result.json").exists()
    assert f"[failed] {bad}: exit code 2; log: {bad}/sweep.log" in failed.stdout
    assert "Failed runs (1)" in failed.stdout and f"    log: {bad}/sweep.log" in failed.stdout
    assert "caltech-101" in (bad / "sweep.log").read_text()  # train.py's error is in the log
    assert {markers(d / "sweep.log")[0][1]["gpus"] for d in (good, bad)} == {"0", "1"}

    status = run_sweep(*grid, "--status", env=world["env"])
    assert "2 runs: 1 done, 1 failed" in status.stdout and f"{bad}: exit code 2" in status.stdout

    good_log = (good / "sweep.log").read_text()
    missing.write_bytes(image)
    fixed = run_sweep(*args, env=world["env"])
    assert "2 runs: 1 done, 1 failed; to submit: 1" in fixed.stdout
    assert f"[failed (exit code 2)] {bad}" in fixed.stdout
    assert (bad / "result.json").is_file()
    assert (good / "sweep.log").read_text() == good_log  # the finished run was not touched
    assert [e for e, _ in markers(bad / "sweep.log")] == ["start", "exit", "start", "exit"]


def test_sweep_sh_hands_the_grid_to_the_launcher(tmp_path):
    """scripts/sweep.sh with LAUNCHER set: the same grid (its env settings) through the sweep."""
    write_fixture(tmp_path / "data", FIXTURES["dtd"])  # the grid is checked before the dry run too
    env = clean_env(tmp_path, DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"),
               DATASETS="dtd", SHOTS="1 2", SEEDS="2", NCTX="4", LAUNCHER="local",
               SWEEP_OPTS="--dry-run --gpus none")
    proc = subprocess.run(["bash", "scripts/sweep.sh", "coop", "OPTIM.MAX_EPOCH", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=scaled_timeout(120))
    assert proc.returncode == 0, proc.stderr
    assert "2 runs: 2 new; to submit: 2" in proc.stdout
    for setting in ("rn50_ep50_1shots", "rn50_ep100_2shots"):
        assert f"[new] {tmp_path}/out/dtd/CoOp/{setting}/nctx4_cscFalse_ctpend/seed2" in \
            proc.stdout
    assert proc.stdout.count("TRAINER.COOP.N_CTX 4") == 2
    assert proc.stdout.count("OPTIM.MAX_EPOCH 1") == 2
    assert not (tmp_path / "out").exists()
