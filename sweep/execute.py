"""The one run executor of the scripts, the local launcher and the demo.

Before anything runs, every planned run is checked: a finished run (its result.json exists)
is reused only when the settings it recorded equal the requested ones; otherwise the caller
stops with a message that says what differs (FORCE moves the old folder aside instead). A run
is then started as `train.py` with its planned arguments, after its request is written to
`<run>/request.json` (the engine copies it into result.json). Runs go one at a time with
their output on the console (the scripts), or several at a time, one per slot, each with its
output in `<run>/sweep.log` (the launcher and the demo).
"""
import json
import os
import os.path as osp
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Queue
from typing import Dict, List

from dassl.utils.errors import UserError
from fewshot_grid import layout
from fewshot_grid.plan import REPO_ROOT, archive

from .job import LOG_NAME, run_one

TRAIN_PY = osp.join(REPO_ROOT, "train.py")
REQUEST_FILE = "request.json"  # the engine copies this file into result.json as "request"


@dataclass(frozen=True)
class Slot:
    """One place a run goes: its name in messages and the variables its process gets."""
    name: str
    env: Dict[str, str]


@dataclass(frozen=True)
class Outcome:
    run: object  # fewshot_grid.plan.Run
    ok: bool
    detail: str  # "exit code 1", ...
    log: str


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_slots(workers, name="cpu"):
    """`workers` CPU slots, the cores shared out between them (unless OMP_NUM_THREADS is set:
    oversubscribed threads make every small op wait)."""
    env = {"CUDA_VISIBLE_DEVICES": ""} if name == "cpu" else {}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, available_cpus() // workers))
    return [Slot(f"{name} {i}", dict(env)) for i in range(workers)]


def recorded_request(run_dir):
    """The request a finished run recorded (result.json, else the request file next to it)."""
    for name, key in ((layout.RESULT_FILE, "request"), (REQUEST_FILE, None)):
        path = osp.join(run_dir, name)
        if osp.isfile(path):
            with open(path) as f:
                record = json.load(f)
            if key is None or key in record:
                return record if key is None else record[key]
    return None


def differences(recorded, requested):
    """`name: recorded X, requested Y` for every setting that differs."""
    return [f"{key}: recorded {recorded.get(key)!r}, requested {requested.get(key)!r}"
            for key in requested if recorded.get(key) != requested.get(key)]


def check_finished(run, fix):
    """Stop (UserError) when finished `run` recorded other settings than those requested."""
    recorded = recorded_request(run.output_dir)
    diff = differences(recorded, run.request()) if recorded is not None else []
    if diff:
        raise UserError(f"{run.output_dir} finished with other settings ({'; '.join(diff)}); "
                        f"{fix}")


def triage(runs, force=False, fix="rerun with FORCE=1 (moves the old folder aside) or "
                                    "write to another OUTPUT", say=print):
    """The runs to start, in order; finished runs with the requested settings are left out
    (one `[skip]` line each). A finished run recorded with other settings stops everything
    (UserError) unless `force`, which moves it (and unfinished folders) aside."""
    todo = []
    for run in runs:
        status = run.status
        if force and status != "new":
            say(f"[force] {run.output_dir} moved aside to {archive(run.output_dir)}")
            status = "new"
        if status == "done":
            check_finished(run, fix)
            say(f"[skip] {run.output_dir}: finished (result.json exists); FORCE=1 reruns it")
            continue
        if status == "unfinished":
            say(f"[resume] {run.output_dir}: unfinished (no result.json); running it again: "
                f"it resumes from its latest checkpoint (see its log); the old log is kept")
        todo.append(run)
    return todo


def write_request(run):
    os.makedirs(run.output_dir, exist_ok=True)
    with open(osp.join(run.output_dir, REQUEST_FILE), "w") as f:
        json.dump(run.request(), f, indent=1)


def command(run):
    return [sys.executable, TRAIN_PY, *run.args]


def run_in_console(run, env=None):
    """Run one run with its output on this console; returns train.py's exit code."""
    print(f"[run] {run.output_dir}", flush=True)
    write_request(run)
    return subprocess.call(command(run), stdin=subprocess.DEVNULL,
                           env=dict(os.environ, **(env or {})))


def job_spec(run, launcher, env=None):
    """What `job.run_one` needs to run `run` anywhere (a local slot or a SLURM node)."""
    return {"argv": command(run), "cwd": os.getcwd(), "env": dict(env or {}),
            "log": osp.abspath(osp.join(run.output_dir, LOG_NAME)),
            "done": osp.abspath(osp.join(run.output_dir, layout.RESULT_FILE)),
            "launcher": launcher}


def _outcome(run, code, spec):
    if code != 0:
        return Outcome(run, False, f"exit code {code}", spec["log"])
    if not osp.isfile(spec["done"]):
        return Outcome(run, False, "exited 0 without result.json", spec["log"])
    return Outcome(run, True, "", spec["log"])


def run_parallel(runs, slots, on_start=None, on_finish=None, stop_after_failure=False):
    """Run `runs`, at most one per slot at a time, each logging to its sweep.log; returns
    the outcomes in the order the runs finished. `on_start(run, slot)` and
    `on_finish(outcome)` report progress (called one at a time)."""
    free: Queue = Queue()
    for slot in slots:
        free.put(slot)
    lock = threading.Lock()
    outcomes: List[Outcome] = []

    def execute(run):
        if stop_after_failure and any(not o.ok for o in outcomes):
            return
        slot = free.get()
        try:
            spec = job_spec(run, "local", slot.env)
            write_request(run)
            with lock:
                if on_start:
                    on_start(run, slot)
            outcome = _outcome(run, run_one(spec), spec)
        finally:
            free.put(slot)
        with lock:
            outcomes.append(outcome)
            if on_finish:
                on_finish(outcome)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        for future in [pool.submit(execute, run) for run in runs]:
            future.result()
    return outcomes
