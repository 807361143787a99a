"""The runs of a sweep and what state each one is in.

Runs are expanded by `fewshot_grid.plan`, the planner `scripts/<method>/main.sh` uses, so a
sweep makes the same runs into the same folders. A run is done only when the engine wrote its
`result.json` (the same done marker as main.sh); the markers of its `sweep.log` tell apart a run
that is queued or running now, one whose job failed, and one whose job vanished (killed).
"""
import functools
import getpass
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

from dassl.utils.errors import UserError
from fewshot_grid import layout, plan

from .job import LOG_NAME, read_last_marker

DONE = "done"
RUNNING = "running"  # queued or running in a job that still exists
FAILED = "failed"  # its job ended without result.json
LOST = "lost"  # queued or started, but its job is gone (killed, node died, ...)
UNFINISHED = "unfinished"  # a folder without result.json that no sweep ran (e.g. main.sh)
NEW = "new"
TO_SUBMIT = (FAILED, LOST, UNFINISHED, NEW)
STATES = (DONE, RUNNING, FAILED, LOST, UNFINISHED, NEW)


def state_counts(states):
    counts = Counter(s.state for s in states)
    return ", ".join(f"{counts[name]} {name}" for name in STATES if counts[name])


def log_path(run):
    return osp.join(run.output_dir, LOG_NAME)


def result_path(run):
    return osp.join(run.output_dir, layout.RESULT_FILE)


def expand(methods, datasets, shots, seeds, output, root, settings=None, extra=(), plugins=()):
    """Every run of methods x datasets x shots x seeds, in that order (an evaluation-only
    method: one seedless run per dataset). Raises UserError for an unknown method, dataset,
    option or config."""
    settings = settings or {}
    declared = [plan.get_method(m, plugins) for m in methods]
    unused = [k for k in settings if not any(plan.method_settings(m, {k: "x"}) for m in declared)]
    if unused:
        raise UserError(f"--option {', '.join(unused)}: no method of this sweep has it")
    runs = []
    for method in declared:
        for dataset, k in plan.grid(method.name, datasets, shots, plugins):
            runs += plan.plan_runs(method.name, dataset, k, seeds, output, root,
                                   plan.method_settings(method, settings), extra, plugins)
    # A name given twice (--datasets dtd dtd) must not give two jobs writing one folder.
    return list({run.output_dir: run for run in runs}.values())


@dataclass(frozen=True)
class RunState:
    run: plan.Run
    state: str
    detail: str = ""  # why (exit code, job id, ...)

    @property
    def log(self):
        return log_path(self.run)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def live_slurm_jobs():
    """Ids (`123`, `123_4`) of this user's jobs SLURM still knows; None if squeue is missing."""
    if shutil.which("squeue") is None:
        return None
    proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-u", getpass.getuser()],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[sweep] squeue failed ({proc.stderr.strip()}); treating the queued runs as "
              f"running", file=sys.stderr)
        return None
    return set(proc.stdout.split())


def _job_alive(fields, slurm_jobs):
    """(alive, detail) of the job a marker names; alive None when it cannot be told (counted
    as running). `slurm_jobs()`: the live SLURM job ids, or None without squeue."""
    if fields.get("launcher") == "slurm":
        job, live = fields.get("job", "-"), slurm_jobs()
        if live is None:
            return None, f"SLURM job {job} (no squeue here to check it)"
        return job in live or job.split("_")[0] in live, f"SLURM job {job}"
    host, pid = fields.get("host", ""), fields.get("pid", "")
    if host != socket.gethostname():
        return None, f"local job pid {pid} on {host} (another machine: cannot check)"
    return pid.isdigit() and _pid_alive(int(pid)), f"local job pid {pid}"


def classify(runs):
    """The state of every run (see the module docstring)."""
    slurm_jobs = functools.lru_cache(maxsize=None)(live_slurm_jobs)  # squeue at most once
    states = []
    for run in runs:
        if layout.is_finished(run.output_dir):
            states.append(RunState(run, DONE))
            continue
        marker = read_last_marker(log_path(run))
        if marker is None:
            state = UNFINISHED if osp.exists(run.output_dir) else NEW
            states.append(RunState(run, state))
            continue
        event, fields = marker
        if event == "exit":
            code = fields.get("code", "?")
            why = "exited 0 without result.json" if code == "0" else f"exit code {code}"
            states.append(RunState(run, FAILED, why))
            continue
        alive, detail = _job_alive(fields, slurm_jobs)
        if alive is False:
            states.append(RunState(run, LOST, f"{event} in {detail}, which is gone"))
        else:
            states.append(RunState(run, RUNNING, f"{event} in {detail}"))
    return states
