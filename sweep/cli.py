"""Command line of the sweep launcher (`python -m sweep`)."""
import argparse
import os
import os.path as osp
import shlex
import sys

from dassl.utils.errors import UserError, run_cli
from fewshot_grid import plan
from fewshot_grid.benchmarks import BENCHMARKS, SEEDS, SHOTS

from fewshot_grid.tables import fewshot_markdown, fewshot_tables

from . import LauncherError, local, slurm
from .execute import check_finished, job_spec
from .runs import DONE, FAILED, RUNNING, TO_SUBMIT, classify, expand, state_counts

USAGE_EXAMPLES = """examples:
  # every TaskRes run of two datasets, one job per visible GPU of this machine
  python -m sweep --methods taskres --datasets dtd eurosat --data $DATA
  # CPU only, 2 workers, 1 epoch (trailing KEY VALUE overrides go to every train.py)
  python -m sweep --methods coop --datasets dtd --shots 1 2 --gpus none --workers 2 \\
      -- OPTIM.MAX_EPOCH 1
  # the whole paper grid of three methods on SLURM, 32 runs at a time
  python -m sweep --methods taskres coop clip_adapter --launcher slurm --partition gpu \\
      --array-parallelism 32 --data $DATA
  # what would be submitted / where a sweep stands (results table, failed runs)
  python -m sweep --methods taskres --dry-run
  python -m sweep --methods taskres --status

A run is done when its result.json exists (as for scripts/<method>/main.sh, which makes the
same runs into the same folders); running the same command again submits only what is
missing or failed. Each run's console output is <run folder>/sweep.log."""

# Options that only make sense with one launcher (default None = not given).
LOCAL_ONLY = ("gpus", "workers")
SLURM_ONLY = (*slurm.SCALAR_OPTIONS, "group_size", "slurm_setup", "slurm_extra")


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m sweep", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a grid of few-shot runs (methods x datasets x shots x seeds) in "
                    "parallel on this machine or on a SLURM cluster.",
        epilog=USAGE_EXAMPLES)
    grid = p.add_argument_group("the grid")
    grid.add_argument("--methods", nargs="+", required=True,
                      help="declared methods: taskres, coop, clip_adapter, zeroshot, and "
                           "those of --plugin files")
    grid.add_argument("--datasets", nargs="+", default=list(BENCHMARKS),
                      help="dataset config stems (default: the 11 benchmarks)")
    grid.add_argument("--shots", type=int, nargs="+", default=list(SHOTS),
                      help="shot counts (default: 1 2 4 8 16; zeroshot has none)")
    grid.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS),
                      help="seeds (default: 1 2 3)")
    grid.add_argument("--data", default="", help="dataset root (default: $DATA)")
    grid.add_argument("--output", default="output", help="output root (default: output)")
    grid.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                      help="a setting of the methods that declare it, as the scripts' "
                           "environment variables: CFG=rn50_ep50 (one method only), "
                           "TRAINER=ZeroshotCLIP2, NCTX=4, ENHANCED_BASE=strong_base/, ...; "
                           "repeatable")
    grid.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                      help="a file declaring more methods (also read from $PLUGINS)")

    what = p.add_argument_group("what to do")
    what.add_argument("--launcher", choices=("local", "slurm"), default="local")
    what.add_argument("--fast", action="store_true",
                      help="the fast pipeline (TRAIN.FEATURE_CACHE.PIPELINE fast): cached "
                           "augmented views, not the reference's numbers")
    what.add_argument("--dry-run", action="store_true",
                      help="print what would be submitted, submit nothing")
    what.add_argument("--status", action="store_true",
                      help="submit nothing; print the state of every run, the failed runs "
                           "with their log and the results table")
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


def _split_overrides(argv):
    """Everything after the first `--` is KEY VALUE overrides for every train.py."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def check_args(parser, args, extra):
    if len(extra) % 2:
        parser.error(f"overrides after -- come in KEY VALUE pairs; got {len(extra)} words")
    if any(o.startswith("CFG=") for o in args.option) and len(args.methods) > 1:
        parser.error("--option CFG=... names one method's config file; sweep one method with it")
    wrong = LOCAL_ONLY if args.launcher == "slurm" else SLURM_ONLY
    given = [f"--{n.replace('_', '-')}" for n in wrong if getattr(args, n) is not None]
    if given:
        other = "local" if args.launcher == "slurm" else "slurm"
        parser.error(f"{', '.join(given)} belong(s) to --launcher {other}")


def print_failures(failures):
    """failures: (run folder, why, log path); prints nothing when there are none."""
    if failures:
        print(f"\nFailed runs ({len(failures)}); their log, then run the same sweep again to "
              f"rerun only them:")
    for folder, why, log in failures:
        print(f"  {folder}: {why}\n    log: {log}")


def print_table(output, runs):
    """The results table of the sweep's datasets, shots and seeds (finished runs only; an
    incomplete grid is marked, not averaged), as `parse_results.py --table` prints it."""
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


def _print_plan(todo, skipped_running):
    for s in skipped_running:
        print(f"  [skip, {s.state}] {s.run.output_dir}: {s.detail}")
    for s in todo:
        why = f" ({s.detail})" if s.detail else ""
        print(f"  [{s.state}{why}] {s.run.output_dir}")


def show_status(runs, states, output):
    print(f"[sweep] {len(runs)} runs: {state_counts(states)}")
    for s in states:
        if s.state == RUNNING:
            print(f"  [running] {s.run.output_dir}: {s.detail}")
    print_failures([(s.run.output_dir, s.detail, s.log) for s in states
                           if s.state == FAILED])
    print_table(output, runs)
    return 0


def dry_run(args, todo, slurm_opts, folder):
    print("[sweep] dry run, nothing submitted; the commands:")
    for s in todo:
        spec = job_spec(s.run, args.launcher)
        print(f"  {shlex.join(spec['argv'])}")
    if args.launcher == "slurm":
        for line in slurm.describe(slurm_opts, len(todo), args.group_size or 1, folder):
            print(line)
    else:
        slots = local.make_slots(args.gpus or "auto", args.workers)
        print(f"local: {len(slots)} job(s) at a time: {', '.join(s.name for s in slots)}")
    return 0


def launch_local(args, runs, todo):
    slots = local.make_slots(args.gpus or "auto", args.workers)
    print(f"[sweep] local: {len(slots)} job(s) at a time ({', '.join(s.name for s in slots)})")
    outcomes = local.run_local([s.run for s in todo], slots)
    failures = [(o.run.output_dir, o.detail, o.log) for o in outcomes if not o.ok]
    print(f"\n[sweep] finished: {len(outcomes) - len(failures)} done, {len(failures)} failed")
    print_failures(failures)
    print_table(args.output, runs)
    return 1 if failures else 0


def launch_slurm(args, todo, slurm_opts, folder):
    submitted = slurm.submit([s.run for s in todo], folder, slurm_opts, args.group_size or 1)
    ids = sorted({job.job_id.split("_")[0] for job, _ in submitted})
    print(f"[sweep] submitted {len(todo)} run(s) as {len(submitted)} SLURM task(s), array "
          f"job(s) {', '.join(ids)}; each run's output goes to <run folder>/sweep.log, "
          f"submitit's files to {folder}")
    print("[sweep] see where it stands (results table, failed runs): the same command with "
          "--status")
    return 0


def parse(argv):
    """(options, KEY VALUE overrides) of a launcher command line; exits on a malformed one."""
    argv, extra = _split_overrides(list(argv))
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args, extra)
    return args, extra


def sweep(args, extra):
    """Plan the grid, then submit what is missing (or show where it stands)."""
    runs = expand(args.methods, args.datasets, args.shots, args.seeds, args.output,
                  args.data, plan.settings_from_pairs(args.option),
                  tuple(extra) + tuple(plan.FAST_OVERRIDES if args.fast else ()), args.plugin)
    try:
        slurm_opts = slurm.options_from(args) if args.launcher == "slurm" else None
    except ValueError as error:
        raise UserError(str(error))
    states = classify(runs)
    if args.status:
        return show_status(runs, states, args.output)
    for state in states:
        if state.state == DONE:
            check_finished(state.run, "move it aside (python -m sweep.script archive DIR) or "
                                      "sweep into another --output")

    submit_states = TO_SUBMIT + ((RUNNING,) if args.resubmit_running else ())
    todo = [s for s in states if s.state in submit_states]
    skipped_running = [s for s in states if s.state == RUNNING and s not in todo]
    print(f"[sweep] {len(runs)} runs: {state_counts(states)}; to submit: {len(todo)}")
    _print_plan(todo, skipped_running)
    folder = args.submitit_dir or osp.join(args.output, ".sweep", args.launcher)
    try:
        if args.dry_run:
            return dry_run(args, todo, slurm_opts, folder)
        if not todo:
            print("[sweep] nothing to submit")
            print_table(args.output, runs)
            return 0
        if args.launcher == "slurm":
            return launch_slurm(args, todo, slurm_opts, folder)
        return launch_local(args, runs, todo)
    except LauncherError as error:
        raise UserError(str(error))
    except KeyboardInterrupt:
        return 130


def run():
    """Entry point of `python -m sweep`; run from the repository root (or with it on
    PYTHONPATH), like train.py."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_cli(lambda: sweep(*parse(sys.argv[1:]))))
