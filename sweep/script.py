"""The entry point behind the shell scripts (`scripts/*.sh` are thin calls into it):

    python -m sweep.script main METHOD DATASET [SHOTS] [KEY VALUE ...]   scripts/main.sh
    python -m sweep.script eval METHOD DATASET SHOTS [KEY VALUE ...]     TARGETS (default DATASET)
    python -m sweep.script dg METHOD [SHOTS] [KEY VALUE ...]             train on ImageNet, test on its shifts
    python -m sweep.script sweep METHOD [KEY VALUE ...]                  every dataset x shots
    python -m sweep.script paper ITEM [KEY VALUE ...]                   a TaskRes paper table/figure (sweep.paper)
    python -m sweep.script archive RUN_DIR

Settings come from the environment, as the scripts document them: DATA, OUTPUT (default
output), SEEDS (default "1 2 3"), FORCE=1, CFG, TRAINER (methods with alternatives, e.g.
ZeroshotCLIP2), each option the method declares (NCTX, CSC, CTP for CoOp; ENHANCED_BASE for
TaskRes), PLUGINS (files declaring more methods), DATASETS and SHOTS (sweep), and LAUNCHER with
SWEEP_OPTS (sweep: hand the grid to `python -m sweep`); FAST=1 runs the fast pipeline
(cached augmented views; recorded in the run's request, so it never reuses an exact run).
"""
import os
import re
import shlex
import sys

from dassl.utils.errors import UserError, run_cli
from fewshot_grid import plan
from fewshot_grid.benchmarks import BENCHMARKS, DG_SOURCE, DG_TARGETS, SHOTS

from . import cli as sweep_cli
from .execute import run_in_console, triage


def _numbers(name, default):
    text = os.environ.get(name, "")
    try:
        return [int(x) for x in text.split()] if text.strip() else list(default)
    except ValueError:
        raise UserError(f"{name}={text!r}: give whole numbers separated by spaces, e.g. "
                        f"{name}=\"{' '.join(map(str, default))}\"")


def _request(method):
    env = os.environ
    return dict(seeds=_numbers("SEEDS", (1, 2, 3)), output=env.get("OUTPUT", "") or "output",
                root=None, settings=plan.method_settings(plan.get_method(method), env))


def _execute(runs):
    """Run the planned runs one after the other; stop at the first that fails."""
    for run in triage(runs, force=os.environ.get("FORCE", "0") == "1"):
        code = run_in_console(run)
        if code != 0:
            print(f"[failed] {run.output_dir}: exit code {code}; its log: "
                  f"{os.path.join(run.output_dir, 'log.txt')}", file=sys.stderr)
            return code
    return 0


def _shots_then_overrides(words, default=None):
    if words and words[0].isdigit():
        return int(words[0]), words[1:]
    if default is None:
        raise UserError(f"usage: {os.environ.get('SCRIPT_USAGE', 'SHOTS (a number) first')}")
    return default, words


def main_runs(method, dataset, *rest):
    """One method on one dataset and shot count, one run per seed (no shots: evaluation-only)."""
    trains = plan.get_method(method).trains
    shots, extra = _shots_then_overrides(list(rest), None if trains else 0)
    return _execute(plan.plan_runs(method, dataset, shots, extra=tuple(extra),
                                   **_request(method)))


def eval_runs(method, dataset, *rest):
    shots, extra = _shots_then_overrides(list(rest))
    targets = os.environ.get("TARGETS", "").split() or [dataset]
    return _execute(plan.plan_eval_runs(method, dataset, shots, targets, "eval",
                                        extra=tuple(extra), **_request(method)))


def dg_runs(method, *rest):
    """Train on ImageNet (finished runs are reused), then test on its four shifts."""
    shots, extra = _shots_then_overrides(list(rest), 16)
    code = _execute(plan.plan_runs(method, DG_SOURCE, shots, extra=tuple(extra),
                                   **_request(method)))
    if code:
        return code
    return _execute(plan.plan_eval_runs(method, DG_SOURCE, shots, list(DG_TARGETS), "dg",
                                        extra=tuple(extra), **_request(method)))


def sweep_runs(method, *extra):
    """Every dataset x shot count, one main run after the other; failures are listed at the
    end. LAUNCHER=local|slurm hands the same grid to the parallel launcher instead."""
    datasets = os.environ.get("DATASETS", "").split() or list(BENCHMARKS)
    shots = _numbers("SHOTS", SHOTS)
    request = _request(method)
    launcher = os.environ.get("LAUNCHER", "")
    if launcher:
        if os.environ.get("FORCE", "0") == "1":
            raise UserError("FORCE=1 does not go with LAUNCHER: move the finished runs aside "
                            "(python -m sweep.script archive RUN_DIR), then sweep again")
        argv = ["--launcher", launcher, "--methods", method, "--datasets", *datasets,
                "--shots", *map(str, shots), "--seeds", *map(str, request["seeds"]),
                "--output", request["output"],
                *[f"--option={k}={v}" for k, v in request["settings"].items()],
                *shlex.split(os.environ.get("SWEEP_OPTS", "")), "--", *extra]
        return sweep_cli.sweep(*sweep_cli.parse(argv))
    pairs = plan.grid(method, datasets, shots)
    # Fail once, early, on what every run shares (DATA, CFG, the options), not once per pair.
    plan.plan_runs(method, *pairs[0], extra=tuple(extra), **request)
    failed = []
    for dataset, k in pairs:
        print(f"=== {method}: {dataset}, {k} shots", flush=True)
        try:  # a pair that cannot be planned (e.g. an unknown dataset) fails alone
            planned = plan.plan_runs(method, dataset, k, extra=tuple(extra), **request)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            failed.append(f"{dataset} {k}")
            continue
        if _execute(planned):
            failed.append(f"{dataset} {k}")
    if failed:
        print(f"=== {method}: {len(failed)} failed (rerun them with main.sh; see their "
              f"log.txt):", file=sys.stderr)
        for item in failed:
            print(f"    {item} shots", file=sys.stderr)
        return 1
    print(f"=== {method}: all done. Table: python parse_results.py {request['output']} --table")
    return 0


def paper_runs(item, *extra):
    from .paper import run_item
    return run_item(item, *extra)


def archive_run(run_dir):
    print(plan.archive(run_dir))
    return 0


COMMANDS = {"main": (main_runs, "METHOD DATASET [SHOTS] [KEY VALUE ...]"),
            "eval": (eval_runs, "METHOD DATASET SHOTS [KEY VALUE ...]"),
            "dg": (dg_runs, "METHOD [SHOTS] [KEY VALUE ...]"),
            "sweep": (sweep_runs, "METHOD [KEY VALUE ...]"),
            "paper": (paper_runs, "ITEM [KEY VALUE ...]"),
            "archive": (archive_run, "RUN_DIR")}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv else ""
    if name not in COMMANDS:
        raise UserError(f"usage: python -m sweep.script {{{','.join(COMMANDS)}}} ARGS "
                        f"(see the module's help)")
    function, usage = COMMANDS[name]
    usage = f"usage: {os.environ.get('SCRIPT_USAGE', f'{name} {usage}')}"
    words = re.sub(r"\[.*", "", COMMANDS[name][1]).split()
    if len(argv) - 1 < len(words) or ("SHOTS" in words and not argv[words.index("SHOTS") + 1]
                                      .isdigit()):
        raise UserError(usage)
    fast = os.environ.get("FAST", "0")
    if fast not in ("0", "1", ""):
        raise UserError(f"FAST={fast}: give FAST=1 (the fast pipeline) or FAST=0")
    if fast == "1" and name in ("main", "eval", "dg", "sweep"):  # recorded in each run's request
        argv += plan.FAST_OVERRIDES
    return function(*argv[1:])


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(run_cli(main))
