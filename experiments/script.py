"""The entry point behind the shell scripts, which are thin calls into it:
`python -m experiments.script COMMAND ARGS` with a command of COMMANDS below (`paper`: experiments/paper_run.py).
Settings come from the environment, as scripts/lib.sh and the scripts document them.
"""
import os
import shlex
import sys

from dassl.utils.errors import UserError, run_cli

from . import layout, plan
from .benchmarks import BENCHMARKS, DG_SOURCE, DG_TARGETS, SHOTS

from . import cli as sweep_cli
from .execute import forced, numbers, report_failures, run_one_by_one
from .layout import is_finished
from .preflight import check_grid


def _request(method, extra):
    env = os.environ
    return dict(seeds=numbers("SEEDS", (1, 2, 3)), output=env.get("OUTPUT", "") or "output",
                root=None, settings=plan.method_settings(plan.get_method(method), env),
                extra=tuple(extra))


def _shots_then_overrides(usage, words, default=None):
    if words and words[0].isdigit():
        return int(words[0]), words[1:]
    if default is None:
        raise UserError(usage)
    return default, words


def main_runs(usage, method, dataset, *rest):
    """One method on one dataset and shot count, one run per seed (no shots: evaluation-only)."""
    trains = plan.get_method(method).trains
    shots, extra = _shots_then_overrides(usage, rest, None if trains else 0)
    return run_one_by_one(plan.plan_runs(method, dataset, shots, **_request(method, extra)))


def eval_runs(usage, method, dataset, *rest):
    """Tests of the trained models of DATASET on each of TARGETS (default: DATASET)."""
    shots, extra = _shots_then_overrides(usage, rest)
    targets = os.environ.get("TARGETS", "").split() or [dataset]
    return run_one_by_one(plan.plan_eval_runs(method, dataset, shots, targets, "eval",
                                              **_request(method, extra)))


def _transfer(usage, method, rest, targets, tree, table):
    """Train on ImageNet, all classes (finished runs are reused), then test on `targets`."""
    trains = plan.get_method(method).trains
    shots, extra = _shots_then_overrides(usage, rest, 16 if trains else layout.ZEROSHOT_SHOTS)
    request = _request(method, extra)
    code = run_one_by_one(plan.plan_runs(method, DG_SOURCE, shots, **request))
    code = code or run_one_by_one(plan.plan_transfer_runs(method, DG_SOURCE, targets, tree, shots, **request))
    if not code:
        print(f"=== {method}: done. Table: python parse_results.py {request['output']} {table}")
    return code


def dg_runs(usage, method, *rest):
    """Domain generalisation: ImageNet models tested on its four shifts (OUTPUT/dg/...)."""
    return _transfer(usage, method, rest, DG_TARGETS, layout.DG_DIR, "--dg")


def xd_runs(usage, method, *rest):
    """Cross-dataset transfer: ImageNet models tested on the other 10 benchmarks (OUTPUT/xd/...)."""
    return _transfer(usage, method, rest, [d for d in BENCHMARKS if d != DG_SOURCE], layout.XD_DIR, "--xd")


def base2new_runs(usage, method, dataset, *rest):
    """Train on the base classes (one run per seed), then test each model on the new classes.
    STAGE=train or STAGE=test runs one half (test: the trained models must exist)."""
    stage = os.environ.get("STAGE", "") or "both"
    if stage not in ("both", "train", "test"):
        raise UserError(f"STAGE={stage}: give train, test or both (the default)")
    shots, extra = _shots_then_overrides(usage, rest, plan.BASE2NEW_SHOTS)
    request = _request(method, extra)
    code = 0
    if stage in ("both", "train"):
        code = run_one_by_one(plan.plan_base2new_runs(method, dataset, "train", shots, **request))
    if not code and stage in ("both", "test"):
        code = run_one_by_one(plan.plan_base2new_runs(method, dataset, "test", shots, **request))
    if not code:
        print(f"=== {method}: {dataset} done. Table: python parse_results.py "
              f"{os.path.join(request['output'], layout.BASE2NEW_DIR)} --base2new --datasets {dataset}")
    return code


def base2new_sweep(usage, *methods):
    """The whole protocol (DATASETS, default the 11 benchmarks) for each method, through the
    sweep launcher (LAUNCHER: local or slurm; SWEEP_OPTS: its options); run again to resume."""
    datasets = os.environ.get("DATASETS", "").split() or list(BENCHMARKS)
    seeds = numbers("SEEDS", (1, 2, 3))
    argv = ["--protocol", "base2new", "--launcher", os.environ.get("LAUNCHER", "") or "local",
            "--methods", *methods, "--datasets", *datasets, "--seeds", *map(str, seeds),
            "--output", os.environ.get("OUTPUT", "") or "output",
            *shlex.split(os.environ.get("SWEEP_OPTS", ""))]
    return sweep_cli.sweep(*sweep_cli.parse(argv))


def sweep_runs(usage, method, *extra):
    """Every dataset x shot count, one main run after another (LAUNCHER: python -m experiments)."""
    datasets = os.environ.get("DATASETS", "").split() or list(BENCHMARKS)
    shots = numbers("SHOTS", SHOTS)
    request = _request(method, extra)
    launcher = os.environ.get("LAUNCHER", "")
    if launcher:
        if forced():
            raise UserError("FORCE=1 does not go with LAUNCHER: move the finished runs aside "
                            "(python -m experiments.script archive RUN_DIR), then sweep again")
        argv = ["--launcher", launcher, "--methods", method, "--datasets", *datasets,
                "--shots", *map(str, shots), "--seeds", *map(str, request["seeds"]),
                "--output", request["output"],
                *[f"--option={k}={v}" for k, v in request["settings"].items()],
                *shlex.split(os.environ.get("SWEEP_OPTS", "")), "--", *extra]
        return sweep_cli.sweep(*sweep_cli.parse(argv))
    pairs = plan.grid(method, datasets, shots)
    # The whole grid is planned and checked before the first run: one message, nothing written.
    planned, unplanned = {}, []
    for dataset, k in pairs:
        try:
            planned[(dataset, k)] = plan.plan_runs(method, dataset, k, **request)
        except UserError as error:
            unplanned.append((str(error), f"{dataset} {k} shots"))
    check_grid([r for runs in planned.values() for r in runs if not is_finished(r.output_dir)],
               f"the {method} sweep", unplanned)
    failed = []
    for dataset, k in pairs:
        print(f"=== {method}: {dataset}, {k} shots", flush=True)
        if run_one_by_one(planned[(dataset, k)]):
            failed.append(f"{dataset} {k} shots")
    if failed:
        return report_failures(method, failed, "rerun them with main.sh; see their log.txt")
    print(f"=== {method}: all done. Table: python parse_results.py {request['output']} --table")
    return 0


def paper_runs(usage, item, *extra):
    from .paper_run import run_item
    return run_item(item, *extra)


def archive_run(usage, run_dir):
    print(plan.archive(run_dir))
    return 0


# name: (function, its arguments; those before "[" are required)
COMMANDS = {"main": (main_runs, "METHOD DATASET [SHOTS] [KEY VALUE ...]"),
            "eval": (eval_runs, "METHOD DATASET SHOTS [KEY VALUE ...]"),
            "dg": (dg_runs, "METHOD [SHOTS] [KEY VALUE ...]"),
            "xd": (xd_runs, "METHOD [SHOTS] [KEY VALUE ...]"),
            "base2new": (base2new_runs, "METHOD DATASET [SHOTS] [KEY VALUE ...]"),
            "base2new-sweep": (base2new_sweep, "METHOD [METHOD ...]"),
            "sweep": (sweep_runs, "METHOD [KEY VALUE ...]"),
            "paper": (paper_runs, "ITEM [KEY VALUE ...]"),
            "archive": (archive_run, "RUN_DIR")}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else ""
    if name not in COMMANDS:
        raise UserError(f"usage: python -m experiments.script {{{','.join(COMMANDS)}}} ARGS "
                        f"(see the module's help)")
    function, words = COMMANDS[name]
    usage = f"usage: {os.environ.get('SCRIPT_USAGE', f'{name} {words}')}"
    if len(argv) - 1 < len(words.split("[")[0].split()):
        raise UserError(usage)
    fast = os.environ.get("FAST", "0")
    if fast not in ("0", "1", ""):
        raise UserError(f"FAST={fast}: give FAST=1 (the fast pipeline) or FAST=0")
    if fast == "1" and name in ("main", "eval", "dg", "xd", "base2new", "sweep"):  # recorded in each run's request
        argv += plan.FAST_OVERRIDES
    return function(usage, *argv[1:])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_cli(main))
