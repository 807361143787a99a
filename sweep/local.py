"""`--launcher local`: run the sweep on this machine through the run executor, a fixed number
of runs at a time: one per visible GPU (its `CUDA_VISIBLE_DEVICES` set to that GPU) or N CPU
workers (no GPU, threads shared out), with a progress bar of done/running/failed/remaining.
"""
import os

from tqdm import tqdm

from . import LauncherError
from .execute import Slot, cpu_slots, run_parallel


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
    return cpu_slots(n)


def run_local(runs, slots):
    """Run the planned `runs`, one per slot at a time; a failing run does not stop the others.
    Returns their outcomes in the order they finished."""
    bar = tqdm(total=len(runs), desc="sweep", unit="run", dynamic_ncols=True)
    counts = {"running": 0, "failed": 0}

    def show():
        bar.set_postfix_str(f"done={bar.n - counts['failed']} running={counts['running']} "
                            f"failed={counts['failed']} "
                            f"remaining={len(runs) - bar.n - counts['running']}")

    def started(run, slot):
        counts["running"] += 1
        bar.write(f"[start] {run.output_dir} ({slot.name})")
        show()

    def finished(outcome):
        counts["running"] -= 1
        counts["failed"] += not outcome.ok
        bar.write(f"[done] {outcome.run.output_dir}" if outcome.ok else
                  f"[failed] {outcome.run.output_dir}: {outcome.detail}; log: {outcome.log}")
        bar.update(1)
        show()

    try:
        return run_parallel(runs, slots, started, finished)
    except KeyboardInterrupt:
        bar.write("[sweep] interrupted; run the same command again to go on")
        raise
    finally:
        bar.close()
