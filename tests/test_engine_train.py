"""train.py end to end with a plugin trainer: logs, checkpoints, resume after SIGKILL, eval-only."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.engine_helpers import REPO, run_train, toy_args, write_toy_folder

RESULT_BLOCK = re.compile(
    r"=> result\n\* total: ([\d,]+)\n\* correct: ([\d,]+)\n\* accuracy: (\d+\.\d)%\n"
    r"\* error: (\d+\.\d)%\n\* macro_f1: (\d+\.\d)%\n"
)


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return write_toy_folder(str(tmp_path_factory.mktemp("toydata")))


@pytest.fixture(scope="module")
def finished_run(toy_root, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("run") / "out")
    proc = run_train(toy_args(toy_root, out, "TRAIN.CHECKPOINT_FREQ", "1"))
    return out, proc


def _weights(out, epoch):
    return torch.load(os.path.join(out, "model", f"model.pth.tar-{epoch}"), weights_only=False)["state_dict"]


def test_log_checkpoints_and_result_record(finished_run):
    out, proc = finished_run
    log = open(os.path.join(out, "log.txt")).read()
    assert log == proc.stdout  # everything printed is in the log
    assert "Finish training" in log and "Deploy the last-epoch model" in log
    assert re.search(r"epoch \[1/4\] batch \[2/4\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
                     r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr 1\.0000e-05 eta \d+:\d\d:\d\d", log)
    block = RESULT_BLOCK.search(log.split("Finish training")[1])
    assert block and block.group(1) == "12"
    assert re.search(r"Elapsed: \d+:\d\d:\d\d", log)
    assert sorted(os.listdir(os.path.join(out, "model"))) == ["checkpoint"] + [f"model.pth.tar-{e}" for e in (1, 2, 3, 4)]
    assert open(os.path.join(out, "model", "checkpoint")).read().strip() == "model.pth.tar-4"
    ckpt = torch.load(os.path.join(out, "model", "model.pth.tar-4"), weights_only=False)
    assert ckpt["epoch"] == 4 and ckpt["val_result"] is None
    assert set(ckpt) >= {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    record = json.load(open(os.path.join(out, "result.json")))
    assert f"{record['accuracy']:.1f}" == block.group(3) and record["split"] == "test"


def test_second_run_keeps_the_first_log(toy_root, tmp_path):
    out = str(tmp_path / "out")
    run_train(toy_args(toy_root, out, "OPTIM.MAX_EPOCH", "1"))
    first = open(os.path.join(out, "log.txt")).read()
    run_train(toy_args(toy_root, out, "OPTIM.MAX_EPOCH", "1"))
    logs = sorted(os.listdir(out))
    rotated = [f for f in logs if re.fullmatch(r"log\.txt-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d(-\d+)?", f)]
    assert len(rotated) == 1 and open(os.path.join(out, "log.txt")).read() == first
    assert "Found checkpoint" in open(os.path.join(out, rotated[0])).read()


def test_resume_after_sigkill_matches_uninterrupted_run(toy_root, finished_run, tmp_path):
    ref_out, ref_proc = finished_run
    out = str(tmp_path / "out")
    killed = run_train(toy_args(toy_root, out, "TRAIN.CHECKPOINT_FREQ", "1"), check=False,
                       env={"TOY_KILL_AFTER_EPOCH": "2"})
    assert killed.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, "result.json"))
    resumed = run_train(toy_args(toy_root, out, "TRAIN.CHECKPOINT_FREQ", "1"))
    assert "Previous epoch: 2" in resumed.stdout and "epoch [1/4]" not in resumed.stdout
    for key, ref in _weights(ref_out, 4).items():
        assert torch.equal(ref, _weights(out, 4)[key])
    ref_acc = json.load(open(os.path.join(ref_out, "result.json")))["accuracy"]
    assert json.load(open(os.path.join(out, "result.json")))["accuracy"] == ref_acc


def test_killed_checkpoint_write_never_leaves_a_bad_file(tmp_path):
    """SIGKILL a process in the middle of writing a large checkpoint over a good one."""
    save_dir = tmp_path / "model"
    code = (
        "import sys, torch; from dassl.utils import save_checkpoint;"
        "n=int(sys.argv[2]); save_checkpoint({'state_dict': {'w': torch.full((n,), float(n))}, 'epoch': 3},"
        " sys.argv[1], model_name='model.pth.tar-3'); print('saved', flush=True)"
    )
    subprocess.run([sys.executable, "-c", code, str(save_dir), "10"], cwd=REPO, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-c", code, str(save_dir), str(150_000_000)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in save_dir.iterdir()):
        time.sleep(0.005)
    proc.kill()
    proc.wait()
    from dassl.utils import load_checkpoint
    ckpt = load_checkpoint(str(save_dir / "model.pth.tar-3"))  # the old file, intact, or the complete new one
    assert ckpt["state_dict"]["w"][0].item() in (10.0, 150_000_000.0)
    assert open(save_dir / "checkpoint").read().strip() == "model.pth.tar-3"


def test_nan_loss_raises_floating_point_error_naming_precision(toy_root, tmp_path):
    proc = run_train(toy_args(toy_root, str(tmp_path / "out"), "TRAINER.TOY.LOSS_SCALE", "1e400"), check=False)
    assert proc.returncode != 0
    assert "FloatingPointError" in proc.stderr and "TRAINER.TOY.PREC=fp32" in proc.stderr


def test_eval_only_reproduces_and_names_missing_files(toy_root, finished_run, tmp_path):
    out, _ = finished_run
    ev = run_train(toy_args(toy_root, str(tmp_path / "ev"), flags=["--eval-only", "--model-dir", out, "--load-epoch", "4"]))
    acc = json.load(open(os.path.join(out, "result.json")))["accuracy"]
    assert json.load(open(tmp_path / "ev" / "result.json"))["accuracy"] == acc
    assert f"* accuracy: {acc:.1f}%" in ev.stdout

    missing_epoch = run_train(toy_args(toy_root, str(tmp_path / "ev2"),
                                       flags=["--eval-only", "--model-dir", out, "--load-epoch", "9"]), check=False)
    assert missing_epoch.returncode != 0
    assert os.path.join(out, "model", "model.pth.tar-9") in missing_epoch.stderr
    missing_dir = run_train(toy_args(toy_root, str(tmp_path / "ev3"),
                                     flags=["--eval-only", "--model-dir", str(tmp_path / "nowhere")]), check=False)
    assert missing_dir.returncode == 2
    assert f'--model-dir "{tmp_path / "nowhere"}" does not exist' in missing_dir.stderr


def test_best_val_saves_and_deploys_best_model(toy_root, tmp_path):
    out = str(tmp_path / "out")
    proc = run_train(toy_args(toy_root, out, "TEST.FINAL_MODEL", "best_val", "OPTIM.MAX_EPOCH", "2"))
    assert os.path.isfile(os.path.join(out, "model", "model-best.pth.tar"))
    assert "Deploy the model with the best val performance" in proc.stdout
    assert proc.stdout.count("Evaluate on the *val* set") == 2


def test_install_does_not_shadow_common_top_level_names(tmp_path):
    """Only `dassl` is installed; `datasets`/`trainers` stay repo-local."""
    code = ("import importlib.util, dassl, os; "
            "print(os.path.dirname(os.path.dirname(dassl.__file__)));"
            "[print(n, getattr(importlib.util.find_spec(n), 'origin', None)) for n in ('datasets', 'trainers')]")
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert os.path.realpath(lines[0]) == os.path.realpath(REPO)
    for line in lines[1:]:
        origin = line.split(" ", 1)[1]
        assert origin == "None" or not os.path.realpath(origin).startswith(os.path.realpath(REPO))


def test_corrupt_image_error_names_the_file(toy_root, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(toy_root, root)
    bad = root / "toy" / "train" / "class_1" / "img_2.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    proc = run_train(toy_args(str(root), str(tmp_path / "out"), "OPTIM.MAX_EPOCH", "1"), check=False)
    assert proc.returncode != 0
    assert f'Cannot read image "{bad}"' in proc.stderr
