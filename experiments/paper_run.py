"""Run exactly the grid of one TaskRes paper item (`bash scripts/paper/<item>.sh`):

    python -m experiments.script paper ITEM [KEY VALUE ...]

Enhanced bases first (TaskRes* rows; `python -m trainers.enhanced_base`, existing files are
kept), then every run of the item through the one run executor (finished runs are skipped,
unfinished ones resume), then the domain-generalisation tests. A run that fails is listed at
the end; the others go on. Environment: DATA, OUTPUT, SEEDS, FORCE as for every script;
DATASETS, SHOTS, BACKBONES, TARGETS narrow the grid (e.g. to the demo data); STRONG_BASE is the
enhanced-base folder (default strong_base) and ENHANCED_BASE_EPOCHS their epochs (default 50,
the paper's); LAUNCHER=local runs them in parallel (GPUS, WORKERS).
"""
import os
import os.path as osp
import subprocess
import sys

from dassl.utils.errors import UserError

from . import layout, paper, plan
from .benchmarks import SEEDS
from .paper_render import narrowing_flags

from .preflight import check_grid
from .execute import (forced, make_slots, numbers, report_failures, run_one_by_one,
                      run_with_progress, triage)

ENHANCED_BASE_EPOCHS = 50  # the paper's


def narrowed_from_env(item):
    env = os.environ
    return paper.narrowed(item, env.get("DATASETS", "").split(), numbers("SHOTS"),
                          env.get("BACKBONES", "").split(), env.get("TARGETS", "").split())


def make_enhanced_bases(item, root, extra):
    """Every enhanced base the item's TaskRes* rows need that does not exist yet."""
    epochs = os.environ.get("ENHANCED_BASE_EPOCHS", "") or str(ENHANCED_BASE_EPOCHS)
    needed = {(d, b, k) for row in item.rows if row.enhanced for b in item.backbones
              for d in item.datasets for k in item.shots}
    for dataset, backbone, shots in sorted(needed):
        path = paper.enhanced_base_file(dataset, backbone, shots)
        if osp.isfile(path):
            print(f"[skip] enhanced base {path} exists")
            continue
        print(f"[enhanced base] {path}", flush=True)
        code = subprocess.call(
            [sys.executable, "-m", "trainers.enhanced_base", "--dataset-config-file",
             plan.dataset_config(dataset), "--root", root, "--shots", str(shots), "--backbone",
             backbone, "--epochs", epochs, "--output", paper.enhanced_base_dir(), *extra],
            cwd=plan.REPO_ROOT, stdin=subprocess.DEVNULL)
        if code != 0:
            raise UserError(f"making the enhanced base {path} failed (exit code {code}); see "
                            f"the log above, fix the cause and run the command again")


def run_item(name, *extra):
    item = narrowed_from_env(paper.get_item(name))
    seeds = numbers("SEEDS", SEEDS)
    output = os.environ.get("OUTPUT", "") or "output"
    root = plan.data_root(None)
    if len(extra) % 2:
        raise UserError(f"overrides come in KEY VALUE pairs; got an odd list: {list(extra)}")
    what = f"{name} (bash scripts/paper/{name}.sh)"
    cells = paper.cells(item, output, seeds, root, tuple(extra))
    # Runs on an enhanced base not made yet have no arguments until it is made: checked then.
    waiting = {r.output_dir for r in paper.unique_runs(cells) if not r.args}
    check_grid([r for r in paper.unique_runs(cells) if r.args and not layout.is_finished(r.output_dir)], what)
    make_enhanced_bases(item, root, extra)
    cells = paper.cells(item, output, seeds, root, tuple(extra))
    check_grid([r for r in paper.unique_runs(cells) if r.output_dir in waiting
                and not layout.is_finished(r.output_dir)], what)
    failed = run_all(paper.unique_runs(cells))
    dg_runs = []
    for cell in [c for c in cells if c.dg]:
        if cell.run.output_dir in failed:
            continue
        for run in _dg_runs(cell, output, root, seeds, extra):
            if run.output_dir not in {r.output_dir for r in dg_runs}:
                dg_runs.append(run)
    failed += run_all(dg_runs)
    if failed:
        return report_failures(name, failed, "see their log.txt; run the same command again "
                                             "after fixing the cause")
    done = len({c.output_dir for c in cells})
    print(f"=== {name}: all {done} runs done. Render: python parse_results.py {output} "
          f"--paper {name}" + narrowing_flags(item, seeds))
    return 0


def run_all(runs):
    """Run the planned runs (finished ones are skipped); returns the folders of those that
    failed. One after the other on the console, or LAUNCHER=local: in parallel, one per GPU
    (GPUS=auto|none|0,1,...; WORKERS=N jobs at a time) with each log in <run>/sweep.log."""
    launcher = os.environ.get("LAUNCHER", "")
    if not launcher:
        return [run.output_dir for run in runs if run_one_by_one([run])]
    if launcher != "local":
        raise UserError(f"LAUNCHER={launcher}: a paper command runs its grid here, one run at a "
                        f"time (no LAUNCHER) or in parallel (LAUNCHER=local); on SLURM, submit "
                        f"each method's grid with python -m experiments --launcher slurm")
    workers = numbers("WORKERS")
    slots = make_slots(os.environ.get("GPUS", "") or "auto", workers[0] if workers else None)
    todo = triage(runs, force=forced())
    return [o.run.output_dir for o in run_with_progress(todo, slots) if not o.ok] if todo else []


def _dg_runs(cell, output, root, seeds, extra):
    """The run that makes one DG cell: a zero-shot run on the target, or a test of the
    finished source model on it."""
    settings = paper.row_settings(cell.row, cell.backbone, cell.run.dataset, cell.run.shots)
    if cell.run.eval_only:
        return plan.plan_runs(cell.row.method, cell.dataset, cell.run.shots, seeds, output,
                              root, settings, tuple(extra))
    return [r for r in plan.plan_eval_runs(cell.row.method, cell.run.dataset, cell.run.shots,
                                           [cell.dataset], layout.DG_DIR, [cell.seed], output,
                                           root, settings, tuple(extra))]
