"""`--launcher local`: run the sweep on this machine through submitit's LocalExecutor, a fixed
number of jobs at a time: one per visible GPU (its `CUDA_VISIBLE_DEVICES` set to that GPU) or N
CPU workers (no GPU, threads shared out), with a progress bar of done/running/failed/remaining.
"""
import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Dict

import submitit
from tqdm import tqdm

from . import LauncherError
from .job import register_job_module, run_one
from .runs import job_spec, log_path, result_path

POLL_S = 0.5
NO_TIMEOUT_MIN = 30 * 24 * 60  # submitit's LocalExecutor kills a job after 2 min by default


@dataclass(frozen=True)
class Slot:
    """One place a job runs: its name in messages and the variables its job gets."""
    name: str
    env: Dict[str, str]


@dataclass(frozen=True)
class Outcome:
    run: object  # fewshot_grid.plan.Run
    ok: bool
    detail: str  # "exit code 1", the submitit error, ...
    log: str


def visible_gpus():
    """The GPUs jobs may use: the entries of CUDA_VISIBLE_DEVICES when it is set (ids, UUIDs
    or MIG names are passed on as they are), else every GPU torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch  # only when needed: it is slow to import

    return [str(i) for i in range(torch.cuda.device_count())]


def make_slots(gpus, workers):
    """`gpus`: "auto" (the visible GPUs; CPU workers if there is none), "none" (CPU workers),
    or a comma list of GPU ids. `workers`: jobs at a time; with GPUs a multiple of their count
    (default: one job per GPU), without GPUs the number of CPU workers (default 1)."""
    if gpus == "auto":
        gpu_list = visible_gpus()
    elif gpus == "none":
        gpu_list = []
    else:
        gpu_list = [g.strip() for g in gpus.split(",") if g.strip()]
        if not gpu_list:
            raise LauncherError(f"--gpus {gpus!r}: give GPU ids like 0,1,3, or auto, or none")
        if len(set(gpu_list)) != len(gpu_list):
            raise LauncherError(f"--gpus {gpus}: a GPU is listed twice")
    if gpu_list:
        n = len(gpu_list) if workers is None else workers
        if n < len(gpu_list) or n % len(gpu_list):
            raise LauncherError(f"--workers {workers} with {len(gpu_list)} GPU(s) "
                                f"({','.join(gpu_list)}): give a multiple of the GPU count "
                                f"(jobs per GPU), drop --workers for one job per GPU, or pass "
                                f"--gpus none to run CPU workers")
        per_gpu = n // len(gpu_list)
        # Round robin, so the first jobs spread over all GPUs.
        return [Slot(f"gpu {g}" + (f" job {k + 1}" if per_gpu > 1 else ""),
                     {"CUDA_VISIBLE_DEVICES": g})
                for k in range(per_gpu) for g in gpu_list]
    n = 1 if workers is None else workers
    if n < 1:
        raise LauncherError(f"--workers {n}: need at least 1")
    # A CPU job gets no GPU and its share of the cores (unless the user fixed the threads).
    env = {"CUDA_VISIBLE_DEVICES": ""}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    return [Slot(f"cpu {i}", dict(env)) for i in range(n)]


def _outcome(run, job):
    log = log_path(run)
    try:
        code = job.result()
    except Exception as error:  # the job process itself died (killed, out of memory, ...)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return Outcome(run, False, f"job failed: {first} (submitit log: {job.paths.stdout})", log)
    if code != 0:
        return Outcome(run, False, f"exit code {code}", log)
    if not os.path.isfile(result_path(run)):
        return Outcome(run, False, "exited 0 without result.json", log)
    return Outcome(run, True, "", log)


def _show_counts(bar, outcomes, running, pending):
    """done/running/failed/remaining after the bar; redrawn only when they change (a bar
    that is not on a terminal prints a new line per redraw)."""
    failed = sum(1 for o in outcomes if not o.ok)
    text = (f"done={len(outcomes) - failed} running={len(running)} failed={failed} "
            f"remaining={len(pending)}")
    if text != bar.postfix:
        bar.set_postfix_str(text)


def run_local(runs, slots, folder, timeout_min=None, poll_s=POLL_S):
    """Run `runs` (planned runs) with at most one job per slot; returns their outcomes in
    the order they finished. A failing run does not stop the others."""
    register_job_module()
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=timeout_min or NO_TIMEOUT_MIN)
    pending = deque(runs)
    free = deque(slots)
    running = {}  # job -> (run, slot)
    outcomes = []
    bar = tqdm(total=len(runs), desc="sweep", unit="run", dynamic_ncols=True)
    try:
        while pending or running:
            while pending and free:
                run, slot = pending.popleft(), free.popleft()
                job = executor.submit(run_one, job_spec(run, "local", slot.env))
                running[job] = (run, slot)
                bar.write(f"[start] {run.output_dir} ({slot.name})")
            _show_counts(bar, outcomes, running, pending)
            time.sleep(poll_s)
            for job in [j for j in running if j.done()]:
                run, slot = running.pop(job)
                free.append(slot)
                outcome = _outcome(run, job)
                outcomes.append(outcome)
                bar.write(f"[done] {run.output_dir}" if outcome.ok else
                          f"[failed] {run.output_dir}: {outcome.detail}; log: {outcome.log}")
                bar.update(1)
            _show_counts(bar, outcomes, running, pending)
    except KeyboardInterrupt:
        for job in running:
            job.cancel()  # SIGINT: the job stops its train.py and marks the log
        bar.write(f"[sweep] interrupted: {len(running)} running jobs stopped, {len(pending)} "
                  f"not started; run the same command again to go on")
        raise
    finally:
        bar.close()
    return outcomes
