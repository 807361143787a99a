"""CPU oversubscription: more busy threads than cores. OpenMP threads that find no free core
spin (OMP_WAIT_POLICY active, the default) and every small op waits for the slowest thread, so
an epoch can take tens of times longer; the numbers themselves do not change."""
import os

import torch


def available_cpus():
    """The cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_env(cores, jobs, env=None):
    """Environment for one of `jobs` trainings sharing `cores`: an equal share of the cores
    (OMP_NUM_THREADS, unless `env` already sets it) and passive waiting for idle threads."""
    env = dict(os.environ if env is None else env)
    out = {}
    if "OMP_NUM_THREADS" not in env:
        out["OMP_NUM_THREADS"] = str(max(1, cores // max(1, jobs)))
    if "OMP_WAIT_POLICY" not in env:
        out["OMP_WAIT_POLICY"] = "PASSIVE"
    return out


def oversubscription_warning(threads=None, cores=None, load=None):
    """A warning naming what to set when the busy threads of other programs (the 1-minute load
    average) plus this process's compute threads exceed the cores; None otherwise."""
    threads = torch.get_num_threads() if threads is None else threads
    cores = available_cpus() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # not available on this system
            return None
    if load + threads <= cores:
        return None
    share = max(1, int(cores - load))
    passive = "" if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE" else " OMP_WAIT_POLICY=PASSIVE"
    return (f"WARNING: this machine is oversubscribed: about {load:.1f} threads of other programs are busy "
            f"(1-minute load average) and this run adds {threads} compute thread(s), on {cores} core(s). "
            f"Threads then wait for each other and training can be many times slower (the results do not "
            f"change). Start this run with OMP_NUM_THREADS={share}{passive}, or run fewer trainings at once "
            f"(the sweep launcher and the demo share the cores out themselves).")
