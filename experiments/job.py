"""What a sweep job does where it runs (a local worker or a SLURM node): train.py for each of its
runs, its console output in `<run dir>/sweep.log` between marker lines that the launcher reads
back. Standard library only: submitit pickles this module by value, so a job needs nothing of
this repository on its `sys.path`."""
import datetime
import os
import os.path as osp
import shlex
import signal
import socket
import subprocess

LOG_NAME = "sweep.log"
MARK = "[sweep] "


def write_marker(log_path, event, **fields):
    """Append `[sweep] <event> key=value ... time=...` (values hold no spaces) to a run's log."""
    os.makedirs(osp.dirname(log_path) or ".", exist_ok=True)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    text = " ".join([event] + [f"{key}={value}" for key, value in fields.items()])
    with open(log_path, "a") as f:
        f.write(f"{MARK}{text} time={now}\n")


def read_last_marker(log_path):
    """(event, {key: value}) of the last marker line of a run's log; None without one."""
    if not osp.isfile(log_path):
        return None
    with open(log_path, errors="replace") as f:
        markers = [line for line in f if line.startswith(MARK)]
    if not markers:
        return None
    event, *pairs = markers[-1][len(MARK):].split()
    return event, dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _die_with_job():
    """SIGTERM when the job process dies (Linux), so no orphan train.py holds its GPU."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass


def run_one(spec):
    """Run one planned run; returns train.py's exit code (0 also when it had already finished).
    spec: argv, cwd, env (variables to set), log (its sweep.log), done (its result.json),
    launcher ("local" or "slurm")."""
    log = spec["log"]
    if osp.isfile(spec["done"]):  # finished meanwhile, e.g. by a duplicate submission
        write_marker(log, "exit", code=0, note="already-finished")
        return 0
    env = dict(os.environ, PYTHONUNBUFFERED="1", **spec["env"])
    # The SLURM job: `<array id>_<task id>` in an array task, else the plain job id.
    array_task = [env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")]
    job = "_".join(array_task) if all(array_task) else env.get("SLURM_JOB_ID") or "-"
    write_marker(log, "start", launcher=spec["launcher"], job=job,
                 host=socket.gethostname(), pid=os.getpid(),
                 gpus=env.get("CUDA_VISIBLE_DEVICES") or "-")
    with open(log, "a") as out:
        out.write(f"command: {shlex.join(spec['argv'])}\n")
        out.flush()
        proc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_job)
        try:
            code = proc.wait()
        except BaseException:  # interrupted (Ctrl-C, job cancelled): stop train.py too
            proc.terminate()
            proc.wait()
            out.flush()
            write_marker(log, "exit", code="interrupted")
            raise
    write_marker(log, "exit", code=code)
    return code


def run_group(specs):
    """Several runs one after the other (one SLURM task); a failure does not stop the rest."""
    return [run_one(spec) for spec in specs]
