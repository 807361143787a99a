"""Long runs resume for real: the official 200-epoch TaskRes config (no kept checkpoint before
the end) killed with SIGKILL at 95% resumes from the rolling resume checkpoint and ends
bit-identical to an uninterrupted run (tiny random-weight CLIP, train.py subprocesses)."""
import os
import re
import signal

import pytest
import torch

from dassl.engine.checkpointing import RESUME_FILE
from tests.clip_run_helpers import result, trainer_args, write_fixture_and_clip
from tests.engine_helpers import run_train, train_killed_at_log_line

CONFIG = "TaskRes/adam_lr2e-3_B256_ep200.yaml"  # official: 200 epochs, TRAIN.CHECKPOINT_FREQ 0
KILL_AT = 190  # of 200
ROLLING_EVERY_EPOCH = ["TRAIN.RESUME_EVERY_MINUTES", "0"]
pytestmark = pytest.mark.slow


def _args(data_root, clip, out, *opts):
    return trainer_args("TaskRes", CONFIG, data_root, clip, out, "DescribableTextures",
                        "TRAIN.PRINT_FREQ", "1000", *opts)


def _final_weights(out):
    path = os.path.join(out, "prompt_learner", "model.pth.tar-200")
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_kill_at_95_percent_resumes_near_the_end_and_matches_the_uninterrupted_run(tmp_path):
    data_root, clip = write_fixture_and_clip(tmp_path, "DescribableTextures", per_class=4)
    reference = str(tmp_path / "reference")
    run_train(_args(data_root, clip, reference))  # default: no rolling save in a 10-second run

    out = str(tmp_path / "killed")
    code = train_killed_at_log_line(_args(data_root, clip, out, *ROLLING_EVERY_EPOCH), re.escape(f"epoch [{KILL_AT}/200]"))
    assert code == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, "result.json"))
    assert os.path.isfile(os.path.join(out, "prompt_learner", RESUME_FILE))
    # the log was flushed line by line up to the kill
    killed_log = open(os.path.join(out, "log.txt")).read()
    assert f"epoch [{KILL_AT}/200]" in killed_log
    last_logged = max(int(e) for e in re.findall(r"epoch \[(\d+)/200\]", killed_log))
    assert KILL_AT <= last_logged < 200

    resumed = run_train(_args(data_root, clip, out, *ROLLING_EVERY_EPOCH)).stdout
    start = int(re.search(r"resuming after epoch (\d+) of 200 from the rolling resume checkpoint prompt_learner/resume\.pth\.tar", resumed).group(1))
    # the run died as it logged epoch KILL_AT, before that epoch's rolling checkpoint: the resume
    # starts after the epoch before, the last one whose checkpoint was complete
    assert last_logged == KILL_AT and start == KILL_AT - 1
    assert f"epoch [{start}/200]" not in resumed and f"epoch [{start + 1}/200]" in resumed

    for key, ref in _final_weights(reference).items():
        assert torch.equal(ref, _final_weights(out)[key]), key
    for key in ("accuracy", "macro_f1"):
        assert result(out)[key] == result(reference)[key]
    # the rolling file is gone; the kept checkpoints are exactly the uninterrupted run's
    assert sorted(os.listdir(os.path.join(out, "prompt_learner"))) == \
        sorted(os.listdir(os.path.join(reference, "prompt_learner"))) == ["checkpoint", "model.pth.tar-200"]
