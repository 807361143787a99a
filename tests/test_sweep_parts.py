"""The sweep launcher's parts, in process and fast: run expansion, the states read back from
run folders and their sweep.log markers, and the local job slots (GPU / CPU assignment)."""
import os
import socket
import subprocess
import sys

import pytest

from dassl.utils.errors import UserError
from experiments import plan
from experiments import cli, execute, job


@pytest.fixture
def grid(tmp_path):
    """Two TaskRes runs and one CoOp run planned into tmp_path/out (the data root only has
    to exist for planning)."""
    (tmp_path / "data").mkdir()
    planned = cli.expand(["taskres", "coop"], ["dtd"], [1], [1, 2], str(tmp_path / "out"),
                         str(tmp_path / "data"), extra=("OPTIM.MAX_EPOCH", "1"))
    return planned


def test_expand_makes_main_sh_runs_once_each(tmp_path, grid):
    assert [(r.method, r.seed) for r in grid] == [("taskres", 1), ("taskres", 2), ("coop", 1),
                                                  ("coop", 2)]
    # the same as the planner main.sh calls, per method
    same = plan.plan_runs("coop", "dtd", 1, [1, 2], str(tmp_path / "out"), str(tmp_path / "data"),
                          extra=("OPTIM.MAX_EPOCH", "1"))
    assert grid[2:] == same
    twice = cli.expand(["taskres", "taskres"], ["dtd", "dtd"], [1, 1], [1, 1],
                       str(tmp_path / "out"), str(tmp_path / "data"))
    assert len(twice) == 1  # one folder, one job


def test_options_go_only_to_their_method(tmp_path):
    (tmp_path / "data").mkdir()
    weights = tmp_path / "base.pth.tar"
    weights.write_bytes(b"x")
    settings = {"ENHANCED_BASE": str(weights), "NCTX": "4"}
    taskres, coop = cli.expand(["taskres", "coop"], ["dtd"], [1], [1], str(tmp_path / "o"),
                               str(tmp_path / "data"), settings)
    assert "--enhanced-base" in taskres.args and taskres.variant == "enhanced_base"
    assert "--enhanced-base" not in coop.args and coop.variant == "nctx4_cscFalse_ctpend"
    with pytest.raises(UserError, match="--option TRAINER: no method of this sweep has it"):
        cli.expand(["coop"], ["dtd"], [1], [1], str(tmp_path / "o"), str(tmp_path / "data"),
                   {"TRAINER": "ZeroshotCLIP2"})


def write_log(run, *markers):
    for event, fields in markers:
        job.write_marker(os.path.join(run.output_dir, "sweep.log"), event, **fields)


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_states_from_result_and_markers(grid, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no squeue here
    done, failed, running, lost = grid
    os.makedirs(done.output_dir)
    open(os.path.join(done.output_dir, "result.json"), "w").close()
    host = socket.gethostname()
    write_log(failed, ("start", dict(launcher="local", host=host, pid=1)), ("exit", dict(code=1)))
    write_log(running, ("start", dict(launcher="local", host=host, pid=os.getpid())))
    write_log(lost, ("start", dict(launcher="local", host=host, pid=dead_pid())))
    states = cli.classify(grid)
    assert [s.state for s in states] == ["done", "failed", "running", "lost"]
    assert states[1].detail == "exit code 1"
    assert states[1].log == os.path.join(failed.output_dir, "sweep.log")

    # queued on SLURM, but no squeue to ask: counted as running, never submitted twice
    write_log(lost, ("queued", dict(launcher="slurm", job="77_3")))
    state = cli.classify([lost])[0]
    assert state.state == "running" and "no squeue" in state.detail
    # exit 0 without result.json is a failure; a folder nobody marked is unfinished
    write_log(running, ("exit", dict(code=0)))
    assert cli.classify([running])[0].detail == "exited 0 without result.json"
    os.remove(os.path.join(done.output_dir, "result.json"))
    assert cli.classify([done])[0].state == "unfinished"


def test_a_rerun_marker_wins_over_older_ones(tmp_path):
    log = tmp_path / "run" / "sweep.log"
    job.write_marker(str(log), "start", launcher="local", pid=1)
    with open(log, "a") as f:
        f.write("train.py output\n[sweep]not a marker\n")
    job.write_marker(str(log), "exit", code="interrupted")
    event, fields = job.read_last_marker(str(log))
    assert event == "exit" and fields["code"] == "interrupted" and "time" in fields
    assert job.read_last_marker(str(tmp_path / "missing.log")) is None


def test_slots_one_job_per_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    slots = execute.make_slots("auto", None)
    assert [(s.name, s.env) for s in slots] == [("gpu 2", {"CUDA_VISIBLE_DEVICES": "2"}),
                                                ("gpu 5", {"CUDA_VISIBLE_DEVICES": "5"})]
    # two jobs per GPU, spread round robin
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in execute.make_slots("auto", 4)] == \
        ["2", "5", "2", "5"]
    with pytest.raises(UserError, match="multiple of the GPU count"):
        execute.make_slots("auto", 3)
    assert [s.name for s in execute.make_slots("0,3", None)] == ["gpu 0", "gpu 3"]
    with pytest.raises(UserError, match="listed twice"):
        execute.make_slots("1,1", None)


def test_cpu_workers_share_the_cores(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible: auto means CPU workers
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    slots = execute.make_slots("auto", 2)
    assert [s.name for s in slots] == ["cpu 0", "cpu 1"]
    assert all(s.env == {"CUDA_VISIBLE_DEVICES": "",
                         "OMP_NUM_THREADS": str(max(1, os.cpu_count() // 2))} for s in slots)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice is kept
    assert "OMP_NUM_THREADS" not in execute.make_slots("none", 2)[0].env
    assert len(execute.make_slots("none", None)) == 1


def test_a_task_of_no_runs_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.parse(["--methods", "taskres", "--launcher", "slurm", "--group-size", "0"])
    assert exit_.value.code == 2
    assert "error: --group-size 0: need at least 1 run per job" in capsys.readouterr().err
