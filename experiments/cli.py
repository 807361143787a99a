"""Command line of the sweep launcher (`python -m experiments`): plan the grid, tell what state each
run is in, submit what is missing (or show where the sweep stands)."""
import argparse
import functools
import getpass
import os
import os.path as osp
import shlex
import shutil
import socket
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass

from dassl.utils.errors import UserError, run_cli

from . import layout, plan
from .benchmarks import BENCHMARKS, SEEDS, SHOTS
from .tables import fewshot_markdown, fewshot_tables

from . import slurm
from .execute import check_finished, job_spec, make_slots, run_with_progress
from .job import LOG_NAME, read_last_marker
from .preflight import check_grid

# Options that only make sense with one launcher (default None = not given).
LOCAL_ONLY = ("gpus", "workers")
SLURM_ONLY = (*slurm.DEFAULTS, "group_size", "slurm_setup", "slurm_extra")

DONE = "done"
RUNNING = "running"  # queued or running in a job that still exists
FAILED = "failed"  # its job ended without result.json
LOST = "lost"  # queued or started, but its job is gone (killed, node died, ...)
UNFINISHED = "unfinished"  # a folder without result.json that no sweep ran (e.g. main.sh)
NEW = "new"
TO_SUBMIT = (FAILED, LOST, UNFINISHED, NEW)
STATES = (DONE, RUNNING, FAILED, LOST, UNFINISHED, NEW)


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m experiments", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a grid of few-shot runs (methods x datasets x shots x seeds) in "
                    "parallel on this machine or on a SLURM cluster.",
        epilog="Examples: docs/cluster.md.\nThe same command "
               "again submits only what is missing or failed; a run's output: <run>/sweep.log.")
    grid = p.add_argument_group("the grid")
    grid.add_argument("--methods", nargs="+", required=True,
                      help="taskres, coop, clip_adapter, zeroshot, or a --plugin file's methods")
    grid.add_argument("--datasets", nargs="+", default=list(BENCHMARKS),
                      help="dataset config stems (default: the 11 benchmarks)")
    grid.add_argument("--shots", type=int, nargs="+", default=None,
                      help="shot counts (default: 1 2 4 8 16, base2new 16; zeroshot has none)")
    grid.add_argument("--protocol", choices=("fewshot", "base2new"), default="fewshot",
                      help="base2new: train on the base classes (<output>/base2new/train_base), then "
                           "test each finished model on the new ones (test_new); locally both rounds "
                           "run, on SLURM the same command again submits the tests")
    grid.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                      help="seeds (default: 1 2 3)")
    grid.add_argument("--data", default="", help="dataset root (default: $DATA)")
    grid.add_argument("--output", default="output", help="output root (default: output)")
    grid.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                      help="a method setting named as the scripts' variable: NCTX=4, "
                           "TRAINER=ZeroshotCLIP2, CFG=rn50_ep50 (one method only), ...")
    grid.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                      help="a file declaring more methods (also read from $PLUGINS)")

    what = p.add_argument_group("what to do")
    what.add_argument("--launcher", choices=("local", "slurm"), default="local")
    what.add_argument("--fast", action="store_true",
                      help="the fast pipeline: cached augmented views, not the reference's numbers")
    what.add_argument("--dry-run", action="store_true",
                      help="print what would be submitted, submit nothing")
    what.add_argument("--status", action="store_true",
                      help="submit nothing; show the runs' states, the failed runs and the table")
    what.add_argument("--resubmit-running", action="store_true",
                      help="also submit runs that look queued or running (use when their "
                           "jobs were killed in a way that cannot be checked)")
    what.add_argument("--time-min", type=int, default=None,
                      help="time limit per job in minutes (default: slurm 1440, local none)")
    what.add_argument("--submitit-dir", default="",
                      help="submitit's job files (default: <output>/.sweep/<launcher>)")

    loc = p.add_argument_group("--launcher local")
    loc.add_argument("--gpus", default=None,
                     help="auto (default: one job per visible GPU, CPU workers if none), none "
                          "(CPU workers), or GPU ids like 0,1,3")
    loc.add_argument("--workers", type=int, default=None,
                     help="jobs at a time: CPU workers (default 1), or a multiple of the GPU "
                          "count (jobs per GPU)")

    slurm.add_arguments(p.add_argument_group("--launcher slurm"))
    return p


def parse(argv):
    """(options, KEY VALUE overrides after `--`) of a command line; exits on a malformed one."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    argv, extra = argv[:split], argv[split + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(extra) % 2:
        parser.error(f"overrides after -- come in KEY VALUE pairs; got {len(extra)} words")
    if any(o.startswith("CFG=") for o in args.option) and len(args.methods) > 1:
        parser.error("--option CFG=... names one method's config file; sweep one method with it")
    if args.shots is None:
        args.shots = [plan.BASE2NEW_SHOTS] if args.protocol == "base2new" else list(SHOTS)
    if args.group_size is not None and args.group_size < 1:
        parser.error(f"--group-size {args.group_size}: need at least 1 run per job")
    wrong = LOCAL_ONLY if args.launcher == "slurm" else SLURM_ONLY
    given = [f"--{n.replace('_', '-')}" for n in wrong if getattr(args, n) is not None]
    if given:
        other = "local" if args.launcher == "slurm" else "slurm"
        parser.error(f"{', '.join(given)} belong(s) to --launcher {other}")
    return args, extra


def expand(methods, datasets, shots, seeds, output, root, settings=None, extra=(), plugins=(),
           protocol="fewshot"):
    """Every run of methods x datasets x shots x seeds, in that order, each folder once.
    base2new: the base-class training runs, and the new-class tests of those finished."""
    settings = settings or {}
    declared = [plan.get_method(m, plugins) for m in methods]
    unused = [k for k in settings if not any(plan.method_settings(m, {k: "x"}) for m in declared)]
    if unused:
        raise UserError(f"--option {', '.join(unused)}: no method of this sweep has it")
    runs = []
    for method in declared:
        for dataset, k in plan.grid(method.name, datasets, shots, plugins):
            own = plan.method_settings(method, settings)
            if protocol == "base2new":
                for stage in ("train", "test"):
                    runs += plan.plan_base2new_runs(method.name, dataset, stage, k, seeds, output, root, own,
                                                    extra, plugins, finished_only=True)
            else:
                runs += plan.plan_runs(method.name, dataset, k, seeds, output, root, own, extra, plugins)
    # A name given twice (--datasets dtd dtd) must not give two jobs writing one folder.
    return list({run.output_dir: run for run in runs}.values())


@dataclass(frozen=True)
class RunState:
    run: plan.Run
    state: str
    detail: str = ""  # why (exit code, job id, ...)

    @property
    def log(self):
        return osp.join(self.run.output_dir, LOG_NAME)


def live_slurm_jobs():
    """Ids (`123`, `123_4`) of this user's jobs SLURM still knows; None without squeue."""
    if shutil.which("squeue") is None:
        return None
    proc = subprocess.run(["squeue", "-h", "-r", "-o", "%i", "-u", getpass.getuser()],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"[sweep] squeue failed ({proc.stderr.strip()}); treating the queued runs as "
              f"running", file=sys.stderr)
        return None
    return set(proc.stdout.split())


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return True


def job_alive(fields, slurm_jobs):
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
    return pid.isdigit() and pid_alive(int(pid)), f"local job pid {pid}"


def run_state(run, slurm_jobs):
    """A run is done only when result.json exists; else its sweep.log markers tell whether it
    is queued or running now, failed, or lost with its job."""
    if layout.is_finished(run.output_dir):
        return RunState(run, DONE)
    marker = read_last_marker(osp.join(run.output_dir, LOG_NAME))
    if marker is None:
        return RunState(run, UNFINISHED if osp.exists(run.output_dir) else NEW)
    event, fields = marker
    if event == "exit":
        code = fields.get("code", "?")
        return RunState(run, FAILED, "exited 0 without result.json" if code == "0"
                        else f"exit code {code}")
    alive, detail = job_alive(fields, slurm_jobs)
    if alive is False:
        return RunState(run, LOST, f"{event} in {detail}, which is gone")
    return RunState(run, RUNNING, f"{event} in {detail}")


def classify(runs):
    slurm_jobs = functools.cache(live_slurm_jobs)  # squeue at most once
    return [run_state(run, slurm_jobs) for run in runs]


def state_counts(states):
    counts = Counter(s.state for s in states)
    return ", ".join(f"{counts[name]} {name}" for name in STATES if counts[name])


def print_failures(failures):
    """failures: (run folder, why, log path); prints nothing when there are none."""
    if failures:
        print(f"\nFailed runs ({len(failures)}); their log, then run the same sweep again to "
              f"rerun only them:")
    for folder, why, log in failures:
        print(f"  {folder}: {why}\n    log: {log}")


def print_base2new_table(output, runs):
    from .transfer_tables import base2new_report
    root = osp.join(output, layout.BASE2NEW_DIR)
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    seeds = sorted({r.seed for r in runs if r.seed is not None}) or [1, 2, 3]
    print(f"\n[sweep] results (python parse_results.py {root} --base2new --datasets {' '.join(datasets)} "
          f"--seeds {' '.join(map(str, seeds))}):")
    try:
        print(base2new_report(root, datasets, seeds)[0], end="", flush=True)
    except ValueError as error:  # nothing finished yet
        print(f"  {error}")


def print_table(output, runs):
    """The results table of the sweep's grid, as `parse_results.py --table` prints it."""
    if any(layout.BASE2NEW_DIR in osp.relpath(r.output_dir, output).split(os.sep)[:1] for r in runs):
        return print_base2new_table(output, runs)
    datasets = list(dict.fromkeys(r.dataset for r in runs))  # in the sweep's order
    shots = sorted({r.shots for r in runs})
    seeds = sorted({r.seed for r in runs if r.seed is not None}) or [1, 2, 3]
    mixed = 0 in shots and len(shots) > 1  # evaluation-only beside trained methods
    print(f"\n[sweep] results (python parse_results.py {output} --table --datasets "
          f"{' '.join(datasets)}{'' if mixed else ' --shots ' + ' '.join(map(str, shots))} "
          f"--seeds {' '.join(map(str, seeds))}):")
    tables = fewshot_tables(output, datasets, seeds, None if mixed else shots)
    print(fewshot_markdown(tables, "accuracy") if len(tables.cells) else "  no finished runs yet",
          end="" if len(tables.cells) else "\n", flush=True)


def submit(args, runs, todo, params):
    """Submit `todo` (or print what would be); `params`: SLURM's (None: run here). Exit status."""
    folder = args.submitit_dir or osp.join(args.output, ".sweep", args.launcher)
    slots = None if params or not (todo or args.dry_run) else make_slots(args.gpus or "auto",
                                                                           args.workers)
    if args.dry_run:
        print("[sweep] dry run, nothing submitted; the commands:")
        for s in todo:
            print(f"  {shlex.join(job_spec(s.run, args.launcher)['argv'])}")
        if params:
            print("\n".join(slurm.describe(params, len(todo), args.group_size or 1, folder)))
        else:
            print(f"local: {len(slots)} job(s) at a time: {', '.join(s.name for s in slots)}")
        return 0
    if not todo:
        print("[sweep] nothing to submit")
        print_table(args.output, runs)
        return 0
    if params:
        jobs = slurm.submit([s.run for s in todo], folder, params, args.group_size or 1)
        ids = sorted({job.job_id.split("_")[0] for job in jobs})
        print(f"[sweep] submitted {len(todo)} run(s) as {len(jobs)} SLURM task(s), array "
              f"job(s) {', '.join(ids)}; each run's output goes to <run folder>/sweep.log, "
              f"submitit's files to {folder}")
        print("[sweep] see where it stands (results table, failed runs): the same command "
              "with --status")
        return 0
    print(f"[sweep] local: {len(slots)} job(s) at a time ({', '.join(s.name for s in slots)})")
    outcomes = run_with_progress([s.run for s in todo], slots)
    failures = [(o.run.output_dir, o.detail, o.log) for o in outcomes if not o.ok]
    print(f"\n[sweep] finished: {len(outcomes) - len(failures)} done, {len(failures)} failed")
    print_failures(failures)
    print_table(args.output, runs)
    return 1 if failures else 0


def sweep(args, extra):
    """Plan the grid, then submit what is missing (or show where it stands). base2new, run
    here: a second round submits the new-class tests of the models the first round trained."""
    code = _sweep_round(args, extra)
    if args.protocol == "base2new" and args.launcher == "local" and not (args.status or args.dry_run):
        print("[sweep] base2new: the new-class tests of the finished base-class runs")
        code = _sweep_round(args, extra) or code
    return code


def _sweep_round(args, extra):
    runs = expand(args.methods, args.datasets, args.shots, args.seeds, args.output,
                  args.data, plan.settings_from_pairs(args.option),
                  tuple(extra) + tuple(plan.FAST_OVERRIDES if args.fast else ()), args.plugin,
                  args.protocol)
    params = slurm.executor_parameters(args) if args.launcher == "slurm" else None
    states = classify(runs)
    if args.status:
        print(f"[sweep] {len(runs)} runs: {state_counts(states)}")
        for s in states:
            if s.state == RUNNING:
                print(f"  [running] {s.run.output_dir}: {s.detail}")
        print_failures([(s.run.output_dir, s.detail, s.log) for s in states if s.state == FAILED])
        print_table(args.output, runs)
        return 0
    for state in states:
        if state.state == DONE:
            check_finished(state.run, "move it aside (python -m experiments.script archive DIR) or "
                                      "sweep into another --output")
    check_grid([s.run for s in states if s.state != DONE], "the sweep")
    submit_states = TO_SUBMIT + ((RUNNING,) if args.resubmit_running else ())
    todo = [s for s in states if s.state in submit_states]
    print(f"[sweep] {len(runs)} runs: {state_counts(states)}; to submit: {len(todo)}")
    for s in states:
        if s.state == RUNNING and s not in todo:
            print(f"  [skip, {s.state}] {s.run.output_dir}: {s.detail}")
    for s in todo:
        print(f"  [{s.state}{f' ({s.detail})' if s.detail else ''}] {s.run.output_dir}")
    try:
        return submit(args, runs, todo, params)
    except KeyboardInterrupt:
        return 130


def run():
    """Entry point of `python -m experiments` (run from the repository root, like train.py)."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_cli(lambda: sweep(*parse(sys.argv[1:]))))
