"""Check a whole grid before its first run starts: every run's config (files, overrides, values),
its dataset folder and its CLIP weights. All problems of the grid come back as one message, and
nothing is written (no run folder, no request file), so a misspelt key or a missing dataset
costs seconds instead of one failed run folder per grid cell."""
import os
import os.path as osp

from dassl.utils.errors import UserError

SHOWN_RUNS = 2  # example run folders named per problem


def _run_problems(args):
    """The problems train.py would stop at for these arguments, before loading any model."""
    import train  # the repository's entry point: the same parsing and checks as each run
    from dassl.config.checks import check_run_settings
    from dassl.data.datasets import DATASET_REGISTRY
    from datasets.split_files import DatasetError
    from trainers.common.experiment import import_plugin

    try:
        parsed = train.build_parser().parse_args(args)
    except SystemExit:
        return ["train.py rejects its command line: " + " ".join(args)]
    try:
        plugins = [import_plugin(path) for path in parsed.plugin or []]
    except (OSError, UserError) as error:
        return [str(error)]
    try:
        cfg = train.setup_cfg(parsed, plugins)
        train.check_registered(cfg)
        trainer_class = train.TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
        check_run_settings(cfg, getattr(trainer_class, "trains", True) and not parsed.eval_only)
    except UserError as error:
        return [str(error)]
    problems = []
    try:
        DATASET_REGISTRY.get(cfg.DATASET.NAME).resolve_dataset_dir(cfg)
    except DatasetError as error:
        problems.append(str(error))
    problems += _weights_problems(cfg)
    return problems


def _weights_problems(cfg):
    """Weights that are not there: a MODEL.BACKBONE.PATH that is no file, or (offline) a
    released model missing from the CLIP cache. The tiny pretrained CLIP is built on demand."""
    from trainers.common import clip_loader

    backbone = cfg.MODEL.BACKBONE
    if not backbone.PRETRAINED:
        return []
    if backbone.PATH:
        return [] if osp.isfile(backbone.PATH) else [
            f"MODEL.BACKBONE.PATH = {backbone.PATH!r} is not a file; point it at a CLIP weights file"]
    models = getattr(clip_loader, "_MODELS", {})
    offline = os.environ.get(clip_loader.OFFLINE_ENV, "") not in ("", "0")
    if offline and backbone.NAME in models:
        target = osp.join(clip_loader.cache_dir(), osp.basename(models[backbone.NAME]))
        if not osp.isfile(target):
            return [f"CLIP weights for {backbone.NAME} are not at {target} and {clip_loader.OFFLINE_ENV} is set: "
                    f"download {models[backbone.NAME]} there, or unset {clip_loader.OFFLINE_ENV}"]
    return []


def check_grid(runs, what="the grid", unplanned=()):
    """Raise one UserError listing every problem of `runs` (a list of planned runs), each with
    how many runs it stops and an example folder, and those of the grid cells that could not
    even be planned (`unplanned`: (problem, cell label) pairs); return quietly when all can start."""
    found = {}  # problem -> run folders (or cell labels)
    for problem, label in unplanned:
        found.setdefault(problem, []).append(label)
    checked = {}
    for run in runs:
        # runs that differ only in seed and folder have the same problems: check one of them
        key = tuple(a for i, a in enumerate(run.args) if not _is_run_specific(run.args, i))
        if key not in checked:
            checked[key] = _run_problems(list(run.args))
        for problem in checked[key]:
            found.setdefault(problem, []).append(run.output_dir)
    if not found:
        return
    lines = []
    for problem, folders in found.items():
        example = ", ".join(folders[:SHOWN_RUNS]) + (", ..." if len(folders) > SHOWN_RUNS else "")
        lines.append(f"  - {problem} [{len(folders)} of {len(runs) + len(unplanned)} runs, e.g. {example}]")
    total = len(runs) + len(unplanned)
    raise UserError(f"{what} ({total} runs) was checked before starting and none was started (no run "
                    f"folder written): {len(found)} problem(s) to fix first:\n" + "\n".join(lines))


def _is_run_specific(args, i):
    """--output-dir and --seed (flag and value) differ between the runs of one grid cell."""
    return args[i] in ("--output-dir", "--seed") or (i > 0 and args[i - 1] in ("--output-dir", "--seed"))
