"""`--launcher slurm`: submit the sweep as one SLURM job array through submitit, one array task
per run (or per small group of runs, run one after the other), at most `array_parallelism`
tasks running at a time. Each run's console output goes to its own `sweep.log`; submitit's
files (job pickles, the task's own stdout) go to `<submitit dir>/<array id>_<task id>/`.
"""
from dataclasses import dataclass, field
from typing import Dict, List

from fewshot_grid.plan import settings_from_pairs

from . import LauncherError
from .execute import job_spec, write_request
from .job import register_job_module, run_group, write_marker


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""
    gpus_per_job: int = 1
    cpus_per_task: int = 8
    mem_gb: float = 32
    time_min: int = 24 * 60
    array_parallelism: int = 64  # jobs running at a time
    job_name: str = "fewshot-sweep"
    account: str = ""
    qos: str = ""
    constraint: str = ""
    setup: List[str] = field(default_factory=list)  # shell lines run before the job
    extra: Dict[str, str] = field(default_factory=dict)  # any other #SBATCH --KEY=VALUE


# The options given as `--<name>` on the command line (time_min is shared with local runs).
SCALAR_OPTIONS = ("partition", "gpus_per_job", "cpus_per_task", "mem_gb", "array_parallelism",
                  "job_name", "account", "qos", "constraint")


def add_arguments(group):
    defaults = SlurmOptions()
    for name in SCALAR_OPTIONS:
        default = getattr(defaults, name)
        group.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=None,
                           help=f"default {default!r}" if default != "" else "unset by default")
    group.add_argument("--group-size", type=int, default=None,
                       help="runs per job, run one after the other (default 1)")
    group.add_argument("--slurm-setup", action="append", default=None, metavar="CMD",
                       help="shell line run in the job before train.py (e.g. 'module load "
                            "cuda'); repeatable")
    group.add_argument("--slurm-extra", action="append", default=None, metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. mail-type=END; repeatable")


def options_from(args):
    """SlurmOptions from the parsed command line (defaults where not given)."""
    given = {n: getattr(args, n) for n in SCALAR_OPTIONS if getattr(args, n) is not None}
    return SlurmOptions(**given, time_min=args.time_min or SlurmOptions.time_min,
                        setup=args.slurm_setup or [], extra=settings_from_pairs(
                            args.slurm_extra, "--slurm-extra", "mail-type=END"))


def executor_parameters(opts):
    """Keyword arguments of `submitit.AutoExecutor.update_parameters`: the generic names
    (timeout_min, mem_gb, cpus_per_task, gpus_per_node, ...) and the `slurm_` ones."""
    params = {
        "name": opts.job_name,
        "timeout_min": opts.time_min,
        "mem_gb": opts.mem_gb,
        "cpus_per_task": opts.cpus_per_task,
        "gpus_per_node": opts.gpus_per_job,
        "nodes": 1,
        "tasks_per_node": 1,
        "stderr_to_stdout": True,
        "slurm_array_parallelism": opts.array_parallelism,
    }
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(opts, key):
            params[f"slurm_{key}"] = getattr(opts, key)
    if opts.setup:
        params["slurm_setup"] = list(opts.setup)
    if opts.extra:
        params["slurm_additional_parameters"] = dict(opts.extra)
    return params


def group_runs(runs, group_size):
    """Consecutive runs in groups of `group_size` (the last one may be smaller)."""
    if group_size < 1:
        raise ValueError(f"--group-size {group_size}: need at least 1 run per job")
    return [runs[i:i + group_size] for i in range(0, len(runs), group_size)]


def make_executor(folder, opts, cluster="slurm"):
    """The AutoExecutor a sweep submits with. `cluster` is submitit's: "slurm" on a cluster
    (needs `srun` on PATH); "local" or "debug" run the same parameters elsewhere."""
    import submitit  # the `slurm` extra: only this launcher needs it

    try:
        executor = submitit.AutoExecutor(folder=f"{folder}/%j", cluster=cluster)
    except RuntimeError as error:  # submitit finds no `srun`
        raise LauncherError(f"--launcher slurm: {error} Run the sweep on a machine that "
                            f"submits to the cluster (a login node), or use --launcher local")
    executor.update_parameters(**executor_parameters(opts))
    return executor


def submit(runs, folder, opts, group_size=1, executor=None):
    """Submit the runs as one array; returns [(job, runs of that task)]. Each run's log is
    marked `queued` with its task's id, so a second sweep knows it is taken."""
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    register_job_module()
    executor = executor or make_executor(folder, opts)
    groups = group_runs(runs, group_size)
    for run in runs:
        write_request(run)
    specs = [[job_spec(run, "slurm") for run in group] for group in groups]
    try:
        jobs = executor.map_array(run_group, specs)
    except (FailedJobError, FailedSubmissionError) as error:
        raise LauncherError(f"sbatch refused the submission: {error}. Check the partition, "
                            f"account, time and memory options (--dry-run shows them)")
    for job, group in zip(jobs, specs):
        for spec in group:
            write_marker(spec["log"], "queued", launcher="slurm", job=job.job_id)
    return list(zip(jobs, groups))


def describe(opts, n_runs, group_size, folder) -> List[str]:
    """What a submission would ask for (dry run)."""
    n_tasks = len(range(0, n_runs, group_size)) if n_runs else 0
    lines = [f"SLURM array of {n_tasks} task(s) ({group_size} run(s) each), at most "
             f"{min(n_tasks, opts.array_parallelism)} at a time; submitit folder {folder}",
             "submitit AutoExecutor parameters:"]
    lines += [f"  {key} = {value!r}" for key, value in executor_parameters(opts).items()]
    return lines
