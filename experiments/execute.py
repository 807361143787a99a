"""The one run executor of the scripts, the local launcher and the demo: `train.py` with the
planned arguments, one at a time on the console, or one per slot (a GPU or a CPU worker) with
the output in `<run>/sweep.log`. A finished run is reused only when it recorded the same request."""
import json
import os
import os.path as osp
import subprocess
import sys
import threading
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor
from queue import Queue

from tqdm import tqdm

from dassl.utils.errors import UserError

from . import layout
from .plan import REPO_ROOT, archive

from .job import LOG_NAME, run_one

TRAIN_PY = osp.join(REPO_ROOT, "train.py")
REQUEST_FILE = "request.json"  # the engine copies this file into result.json as "request"
# Where a run goes (a GPU or a CPU worker): its name in messages, the variables its process gets.
Slot = namedtuple("Slot", "name env")
# How a run ended: ok, or why not ("exit code 1", ...), and its sweep.log.
Outcome = namedtuple("Outcome", "run ok detail log")


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_slots(workers, hide_gpus=True):
    """`workers` CPU slots, the cores shared out between them (unless OMP_NUM_THREADS is set:
    oversubscribed threads make every small op wait)."""
    env = {"CUDA_VISIBLE_DEVICES": ""} if hide_gpus else {}
    if "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(max(1, available_cpus() // workers))
    return [Slot(f"cpu {i}", dict(env)) for i in range(workers)]


def visible_gpus():
    """CUDA_VISIBLE_DEVICES' entries (ids, UUIDs or MIG names) if set, else torch's GPUs."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch  # only when needed: it is slow to import

    return [str(i) for i in range(torch.cuda.device_count())]


def make_slots(gpus, workers):
    """`gpus`: "auto" (the visible GPUs, else CPU workers), "none" (CPU workers) or a comma list
    of GPU ids. `workers`: jobs at a time; with GPUs a multiple of their count (default: one per
    GPU), without GPUs the number of CPU workers (default 1)."""
    if gpus in ("auto", "none"):
        gpu_list = visible_gpus() if gpus == "auto" else []
    else:
        gpu_list = [g.strip() for g in gpus.split(",") if g.strip()]
        if not gpu_list:
            raise UserError(f"--gpus {gpus!r}: give GPU ids like 0,1,3, or auto, or none")
        if len(set(gpu_list)) != len(gpu_list):
            raise UserError(f"--gpus {gpus}: a GPU is listed twice")
    if not gpu_list:
        if workers is not None and workers < 1:
            raise UserError(f"--workers {workers}: need at least 1")
        return cpu_slots(workers or 1)
    n = len(gpu_list) if workers is None else workers
    if n < len(gpu_list) or n % len(gpu_list):
        raise UserError(f"--workers {workers} with {len(gpu_list)} GPU(s) ({','.join(gpu_list)}): "
                        f"give a multiple of the GPU count (jobs per GPU), drop --workers for one "
                        f"job per GPU, or pass --gpus none to run CPU workers")
    per_gpu = n // len(gpu_list)
    # Round robin, so the first jobs spread over all GPUs.
    return [Slot(f"gpu {g}" + (f" job {k + 1}" if per_gpu > 1 else ""), {"CUDA_VISIBLE_DEVICES": g})
            for k in range(per_gpu) for g in gpu_list]


def check_finished(run, fix):
    """Stop (UserError) when finished `run` recorded other settings than those requested."""
    with open(osp.join(run.output_dir, layout.RESULT_FILE)) as f:
        recorded = json.load(f).get("request")
    requested = run.request()
    diff = [f"{key}: recorded {recorded.get(key)!r}, requested {requested.get(key)!r}"
            for key in requested if recorded and recorded.get(key) != requested.get(key)]
    if diff:
        raise UserError(f"{run.output_dir} finished with other settings ({'; '.join(diff)}); {fix}")


def triage(runs, force=False, fix="rerun with FORCE=1 (moves the old folder aside) or "
                                    "write to another OUTPUT", say=print):
    """The runs to start; finished runs with the requested settings are skipped, those with other
    settings stop everything (UserError) unless `force` moves them (and unfinished ones) aside."""
    todo = []
    for run in runs:
        if force and osp.exists(run.output_dir):
            say(f"[force] {run.output_dir} moved aside to {archive(run.output_dir)}")
        if layout.is_finished(run.output_dir):
            check_finished(run, fix)
            say(f"[skip] {run.output_dir}: finished (result.json exists); FORCE=1 reruns it")
            continue
        if osp.exists(run.output_dir):
            say(f"[resume] {run.output_dir}: unfinished (no result.json); running it again: "
                f"it resumes from its latest checkpoint (see its log); the old log is kept")
        todo.append(run)
    return todo


def write_request(run):
    os.makedirs(run.output_dir, exist_ok=True)
    with open(osp.join(run.output_dir, REQUEST_FILE), "w") as f:
        json.dump(run.request(), f, indent=1)


def run_in_console(runs, force):
    """Run the runs one by one on this console; stop at the first failure, return its code."""
    for run in triage(runs, force):
        print(f"[run] {run.output_dir}", flush=True)
        write_request(run)
        code = subprocess.call([sys.executable, TRAIN_PY, *run.args], stdin=subprocess.DEVNULL)
        if code != 0:
            print(f"[failed] {run.output_dir}: exit code {code}; its log: "
                  f"{osp.join(run.output_dir, layout.LOG_FILE)}", file=sys.stderr)
            return code
    return 0


def job_spec(run, launcher, env=None):
    """What `job.run_one` needs to run `run` anywhere (a local slot or a SLURM node)."""
    return {"argv": [sys.executable, TRAIN_PY, *run.args], "cwd": os.getcwd(),
            "env": dict(env or {}), "log": osp.abspath(osp.join(run.output_dir, LOG_NAME)),
            "done": osp.abspath(osp.join(run.output_dir, layout.RESULT_FILE)),
            "launcher": launcher}


def run_parallel(runs, slots, on_start=None, on_finish=None, stop_after_failure=False):
    """Run `runs`, one per slot at a time, each logging to its sweep.log; the outcomes in finishing
    order. `on_start(run, slot)` and `on_finish(outcome)` report progress, one at a time."""
    free = Queue()
    for slot in slots:
        free.put(slot)
    lock = threading.Lock()
    outcomes = []

    def execute(run):
        if stop_after_failure and any(not o.ok for o in outcomes):
            return
        slot = free.get()
        try:
            spec = job_spec(run, "local", slot.env)
            write_request(run)
            if on_start:
                with lock:
                    on_start(run, slot)
            code = run_one(spec)
        finally:
            free.put(slot)
        missing = not code and not osp.isfile(spec["done"])
        detail = f"exit code {code}" if code else "exited 0 without result.json" if missing else ""
        with lock:
            outcomes.append(Outcome(run, not detail, detail, spec["log"]))
            if on_finish:
                on_finish(outcomes[-1])

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        for future in [pool.submit(execute, run) for run in runs]:
            future.result()
    return outcomes


def run_with_progress(runs, slots):
    """run_parallel with a progress bar and a line per started and finished run."""
    bar = tqdm(total=len(runs), desc="sweep", unit="run", dynamic_ncols=True)
    counts = {"running": 0, "failed": 0}

    def show(line):
        bar.write(line)
        bar.set_postfix_str(f"done={bar.n - counts['failed']} running={counts['running']} "
                            f"failed={counts['failed']} "
                            f"remaining={len(runs) - bar.n - counts['running']}")

    def started(run, slot):
        counts["running"] += 1
        show(f"[start] {run.output_dir} ({slot.name})")

    def finished(outcome):
        counts["running"] -= 1
        counts["failed"] += not outcome.ok
        bar.update(1)
        show(f"[done] {outcome.run.output_dir}" if outcome.ok else
             f"[failed] {outcome.run.output_dir}: {outcome.detail}; log: {outcome.log}")

    try:
        return run_parallel(runs, slots, started, finished)
    except KeyboardInterrupt:
        bar.write("[sweep] interrupted; run the same command again to go on")
        raise
    finally:
        bar.close()
