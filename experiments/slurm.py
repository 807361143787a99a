"""`--launcher slurm`: the sweep as one SLURM job array through submitit, one array task per run
(or per group of runs), at most `--array-parallelism` at a time."""
from dassl.utils.errors import UserError

from .plan import settings_from_pairs

from . import job
from .execute import job_spec, write_request

# The `--<name>` options of this launcher and their defaults ("": not passed to SLURM).
DEFAULTS = {"partition": "", "gpus_per_job": 1, "cpus_per_task": 8, "mem_gb": 32,
            "array_parallelism": 64, "job_name": "fewshot-sweep", "account": "", "qos": "",
            "constraint": ""}
TIME_MIN = 24 * 60


def add_arguments(group):
    for name, default in DEFAULTS.items():
        group.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=None,
                           help=f"default {default!r}" if default != "" else "unset by default")
    group.add_argument("--group-size", type=int, default=None,
                       help="runs per job, run one after the other (default 1)")
    group.add_argument("--slurm-setup", action="append", default=None, metavar="CMD",
                       help="shell line run in the job before train.py (e.g. 'module load "
                            "cuda'); repeatable")
    group.add_argument("--slurm-extra", action="append", default=None, metavar="KEY=VALUE",
                       help="any other sbatch option, e.g. mail-type=END; repeatable")


def executor_parameters(args):
    """Keyword arguments of `submitit.AutoExecutor.update_parameters` from the command line."""
    opts = {name: default if getattr(args, name) is None else getattr(args, name)
            for name, default in DEFAULTS.items()}
    params = {"name": opts["job_name"], "timeout_min": args.time_min or TIME_MIN,
              "mem_gb": opts["mem_gb"], "cpus_per_task": opts["cpus_per_task"],
              "gpus_per_node": opts["gpus_per_job"], "nodes": 1, "tasks_per_node": 1,
              "stderr_to_stdout": True, "slurm_array_parallelism": opts["array_parallelism"]}
    for key in ("partition", "account", "qos", "constraint"):
        if opts[key]:
            params[f"slurm_{key}"] = opts[key]
    if args.slurm_setup:
        params["slurm_setup"] = list(args.slurm_setup)
    extra = settings_from_pairs(args.slurm_extra, "--slurm-extra", "mail-type=END")
    if extra:
        params["slurm_additional_parameters"] = extra
    return params


def groups_of(runs, group_size):
    return [runs[i:i + group_size] for i in range(0, len(runs), group_size)]


def submit(runs, folder, params, group_size):
    """Submit the runs as one array; returns the jobs, each run's log marked `queued` by id."""
    import cloudpickle  # a submitit dependency
    import submitit  # the `slurm` extra: only this launcher needs it
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    cloudpickle.register_pickle_by_value(job)  # a job then runs without this repository's path
    try:
        executor = submitit.AutoExecutor(folder=f"{folder}/%j", cluster="slurm")
    except RuntimeError as error:  # submitit finds no `srun`
        raise UserError(f"--launcher slurm: {error} Run the sweep on a machine that submits to "
                        f"the cluster (a login node), or use --launcher local")
    executor.update_parameters(**params)
    for run in runs:
        write_request(run)
    specs = [[job_spec(run, "slurm") for run in group] for group in groups_of(runs, group_size)]
    try:
        jobs = executor.map_array(job.run_group, specs)
    except (FailedJobError, FailedSubmissionError) as error:
        raise UserError(f"sbatch refused the submission: {error}. Check the partition, "
                        f"account, time and memory options (--dry-run shows them)")
    for submitted, group in zip(jobs, specs):
        for spec in group:
            job.write_marker(spec["log"], "queued", launcher="slurm", job=submitted.job_id)
    return jobs


def describe(params, n_runs, group_size, folder):
    """What a submission would ask for (dry run)."""
    n_tasks = len(groups_of(range(n_runs), group_size))
    lines = [f"SLURM array of {n_tasks} task(s) ({group_size} run(s) each), at most "
             f"{min(n_tasks, params['slurm_array_parallelism'])} at a time; submitit folder "
             f"{folder}", "submitit AutoExecutor parameters:"]
    return lines + [f"  {key} = {value!r}" for key, value in params.items()]
