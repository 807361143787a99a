"""What a run leaves behind: an evaluation's record (the model and epoch it loaded, never
over a training run), zero-shot records, file modes that follow the umask, no tensorboard
noise, and a full disk that ends in a clean message with no temp file left (train.py
subprocesses, tiny random-weight CLIP)."""
import glob
import importlib.util
import json
import os
import resource
import stat
import subprocess
import sys

import pytest

from tests.clip_run_helpers import result, trainer_args, write_fixture_and_clip
from tests.engine_helpers import REPO
from tests.machine_speed import scaled_timeout

DATASET = "DescribableTextures"
TASKRES = "TaskRes/adam_lr2e-3_B256_ep100.yaml"
ZEROSHOT = "ZeroshotCLIP/rn50.yaml"
FILE_LIMIT = 12_000  # bytes: above log.txt and result.json of a 2-epoch run, below a checkpoint (~20 kB)


def _group_writable_umask():
    os.umask(0o002)


def _small_file_limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))  # writes past it fail with EFBIG


def _start(argv, preexec_fn=None):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "train.py"), *argv], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec_fn,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _finish(proc):
    out, err = proc.communicate(timeout=scaled_timeout(600))
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("records")
    data, clip = write_fixture_and_clip(tmp, DATASET, per_class=4)
    trained, zeroshot, full = (str(tmp / n) for n in ("trained", "zeroshot", "full"))

    def args(trainer, config, out, *opts, flags=()):
        return trainer_args(trainer, config, data, clip, out, DATASET, *opts, flags=flags)

    procs = {
        "trained": _start(args("TaskRes", TASKRES, trained, "OPTIM.MAX_EPOCH", "2", "DATASET.NUM_SHOTS", "2"),
                          preexec_fn=_group_writable_umask),
        "zeroshot": _start(args("ZeroshotCLIP", ZEROSHOT, zeroshot, "DATASET.NUM_SHOTS", "0")),
        "full": _start(args("TaskRes", TASKRES, full, "OPTIM.MAX_EPOCH", "2"), preexec_fn=_small_file_limit),
    }
    done = {name: _finish(proc) for name, proc in procs.items()}
    assert done["trained"][0] == 0, done["trained"][2][-3000:]
    assert done["zeroshot"][0] == 0, done["zeroshot"][2][-3000:]
    evaluation = str(tmp / "evaluation")
    eval_args = args("TaskRes", TASKRES, evaluation, flags=["--eval-only", "--model-dir", trained, "--load-epoch", "2"])
    first = _finish(_start(eval_args))
    trained_result = open(os.path.join(trained, "result.json")).read()
    again = _finish(_start(eval_args))  # a second evaluation may replace the first one's record
    return dict(tmp=tmp, data=data, trained=trained, zeroshot=zeroshot, full=full, evaluation=evaluation,
                done=done, eval_first=first, eval_again=again, trained_result=trained_result)


def test_evaluation_records_the_model_and_epoch_it_loaded(runs):
    assert runs["eval_first"][0] == 0 and runs["eval_again"][0] == 0, runs["eval_again"][2][-2000:]
    record = result(runs["evaluation"])
    assert record["eval_only"] is True
    assert record["loaded_model"] == os.path.join(runs["trained"], "prompt_learner", "model.pth.tar-2")
    assert record["loaded_epoch"] == 2 and record["epochs"] == 2
    assert record["accuracy"] == result(runs["trained"])["accuracy"]
    # the training run's record is not touched by either evaluation
    assert open(os.path.join(runs["trained"], "result.json")).read() == runs["trained_result"]
    assert "eval_only" not in result(runs["trained"])


def test_training_record_says_what_really_ran(runs):
    record = result(runs["trained"])
    assert record["epochs"] == 2 and record["num_shots"] == 2
    assert record["backbone_loaded"] == "tiny-rn"  # the file's architecture, whatever BACKBONE.NAME says
    assert "non-released CLIP architecture (tiny-rn)" in runs["done"]["trained"][1]


def test_zero_shot_record_says_zero_epochs(runs):
    record = result(runs["zeroshot"])
    assert record["epochs"] == 0 and record["num_shots"] == 0
    assert "loaded_epoch" not in record


def test_written_files_follow_the_umask(runs):
    """Under umask 002 every file the run writes is group-writable 0664, as `open()` would
    make it; atomic writes used to leave 0600 (unreadable for the rest of a group)."""
    files = [os.path.join(runs["trained"], "result.json"), os.path.join(runs["trained"], "log.txt"),
             os.path.join(runs["trained"], "prompt_learner", "model.pth.tar-2"),
             os.path.join(runs["trained"], "prompt_learner", "checkpoint"),
             os.path.join(runs["data"], "dtd", "split_fewshot", "shot_2-seed_1.json")]
    modes = {os.path.basename(f): oct(stat.S_IMODE(os.stat(f).st_mode)) for f in files}
    assert modes == {os.path.basename(f): "0o664" for f in files}


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed here")
def test_missing_tensorboard_is_not_announced(runs):
    stdout = runs["done"]["trained"][1]
    assert "tensorboard" not in stdout.lower()
    assert not os.path.exists(os.path.join(runs["trained"], "tensorboard"))


def test_full_disk_stops_cleanly_and_leaves_no_temp_file(runs):
    code, stdout, stderr = runs["done"]["full"]
    assert code == 2 and "Traceback" not in stderr, stderr[-3000:]
    checkpoint = os.path.join(runs["full"], "prompt_learner", "model.pth.tar-2")
    # One error line (a progress bar may come before it: the parallel runs share the test-feature cache).
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f'error: Cannot write "{checkpoint}": File too large.')
    assert "Free disk space" in stderr and "nothing was replaced" in stderr
    assert glob.glob(os.path.join(runs["full"], "**", "*.tmp"), recursive=True) == []
    assert not os.path.exists(os.path.join(runs["full"], "result.json"))
    assert json.loads(json.dumps(os.listdir(runs["full"])))  # the folder itself is intact
