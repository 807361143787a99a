"""Render one TaskRes paper item from an output tree, in the paper's layout (pandas):
Markdown and CSV, and a PNG for the figures (`experiments.paper_plots`).

The runs an item needs come from its declaration (`experiments.paper.cells`), so every cell
is read from exactly the folder its run writes; a missing run is reported with the command
that makes it. Values are means over seeds (and over datasets for averaged tables).
"""
import os
import os.path as osp
import shlex

import numpy as np
import pandas as pd

from dassl.utils.errors import UserError

from . import collect, layout, paper
from .benchmarks import SEEDS, display_name

AVERAGE = "Average"
RESIDUAL_KEY = "text_feature_residuals"  # TaskRes' learned residual in its checkpoints
RESIDUAL_MODULE = "prompt_learner"


def _collected(output, keyword, datasets):
    """Every run below `output` (and its DG tests), by absolute folder: collect.runs_frame."""
    frames = [collect.runs_frame(output, keyword, datasets=datasets)]
    dg_root = osp.join(output, layout.DG_DIR)
    if osp.isdir(dg_root):
        frames.append(collect.runs_frame(dg_root, keyword, eval_only=True, datasets=datasets))
    found = pd.concat(frames, ignore_index=True)
    return found.set_index(found["path"].map(osp.abspath))


def runs_frame(item, output, seeds=SEEDS, keyword="accuracy"):
    """One line per cell of `item`: where it is, its value (NaN when the run is missing) and
    what its result.json recorded (classes, tuned parameters)."""
    found = paper.cells(item, output, seeds)
    runs = _collected(output, keyword, {c.dataset for c in found})
    lines = []
    for cell in found:
        path = osp.abspath(cell.output_dir)
        run = runs.loc[path] if path in runs.index else None
        finished = run is not None and bool(run["finished"])
        lines.append(dict(
            row=cell.row.label, method=cell.row.method, backbone=cell.backbone,
            dataset=cell.dataset, shots=cell.shots, seed=cell.seed, dg=cell.dg,
            value=run[keyword] if finished else np.nan, path=cell.output_dir,
            num_classes=run["num_classes"] if finished else None,
            tuned_params=run["trainable_params"] if finished else None))
    return pd.DataFrame(lines)


def missing_message(item, frame, output, flags):
    """Which runs are missing, and the command that makes them (it skips finished runs)."""
    missing = frame[frame["value"].isna()].drop_duplicates("path")
    shown = "\n".join(f"    {p}" for p in missing["path"].head(20))
    more = f"\n    ... and {len(missing) - 20} more" if len(missing) > 20 else ""
    env = []
    for name, column in (("DATASETS", "dataset"), ("SHOTS", "shots"), ("BACKBONES", "backbone")):
        values = sorted({str(v) for v in missing.loc[~missing["dg"], column]}) \
            if (~missing["dg"]).any() else []
        full = {"DATASETS": item.datasets, "SHOTS": item.shots, "BACKBONES": item.backbones}[name]
        if values and len(values) < len(full):
            env.append(f"{name}={shlex.quote(' '.join(values))}")
    seeds = sorted({int(s) for s in frame["seed"].dropna()})
    if seeds and tuple(seeds) != tuple(SEEDS):
        env.append(f"SEEDS={shlex.quote(' '.join(map(str, seeds)))}")
    command = " ".join(["DATA=/path/to/datasets", f"OUTPUT={shlex.quote(output)}", *env,
                        f"bash scripts/paper/{item.name}.sh"])
    return (f"{item.name}: {len(missing)} of {frame['path'].nunique()} runs are missing "
            f"(no result):\n{shown}{more}\nMake them with (finished runs are skipped):\n"
            f"    {command}\nthen render again: python parse_results.py {output} --paper "
            f"{item.name}{flags} (or add --allow-partial to render what exists)")


def _seed_means(frame):
    keys = ["row", "backbone", "dataset", "shots", "dg"]
    return frame.groupby(keys, sort=False, dropna=False)["value"].mean().reset_index()


def _ordered(table, rows, columns):
    return table.reindex(index=rows, columns=columns)


def _shot_label(k):
    return f"{k}-shot"


def shots_table(item, frame):
    """Rows x shot counts (averaged over the item's datasets when it is an average table)."""
    means = _seed_means(frame)
    if item.average or len(item.datasets) > 1:
        # A dataset with no run leaves the average empty rather than biased.
        means = means.groupby(["row", "shots"], sort=False)["value"].agg(
            lambda v: v.mean(skipna=False)).reset_index()
    table = means.pivot_table(index="row", columns="shots", values="value", dropna=False)
    table = _ordered(table, [r.label for r in item.rows], list(item.shots))
    table.columns = [_shot_label(k) for k in table.columns]
    table.index.name = "Method"
    return table


def params_table(item, frame):
    """Fig. 1's numbers: accuracy per shot count and the tuned parameters of each method."""
    table = shots_table(item, frame)
    params = frame.dropna(subset=["tuned_params"]).groupby("row")["tuned_params"].max()
    counts = [params.get(label, 0 if label == paper.ZERO_SHOT.label else None)
              for label in table.index]
    table["Tuned parameters"] = ["–" if c is None or pd.isna(c) else f"{int(c):,}"
                                 for c in counts]
    return table


def backbones_table(item, frame):
    means = _seed_means(frame)
    table = means.pivot_table(index="row", columns="backbone", values="value", dropna=False)
    table = _ordered(table, [r.label for r in item.rows], list(item.backbones))
    table.index.name = "Method"
    return table


def dg_table(item, frame):
    """(Backbone, Method) x the source dataset and the DG targets."""
    means = _seed_means(frame)
    table = means.pivot_table(index=["backbone", "row"], columns="dataset", values="value",
                              dropna=False)
    index = pd.MultiIndex.from_tuples([(b, r.label) for b in item.backbones for r in item.rows],
                                      names=["Backbone", "Method"])
    datasets = [*item.datasets, *item.dg_targets]
    table = table.reindex(index=index, columns=datasets)
    table.columns = [display_name(d) for d in datasets]
    return table


def datasets_table(item, frame):
    """(Dataset, Method) x shots: one block per dataset, then the average over datasets."""
    blocks = {}
    for dataset in item.datasets:
        blocks[display_name(dataset)] = shots_table(
            paper.narrowed(item, datasets=[dataset]), frame[frame["dataset"] == dataset])
    blocks[AVERAGE] = shots_table(item, frame)
    return pd.concat(blocks, names=["Dataset", "Method"])


def residual_magnitude(run_dir):
    """Mean absolute entry of the residual TaskRes learned: its last saved prompt_learner."""
    from dassl.utils import load_checkpoint
    folder = osp.join(run_dir, RESIDUAL_MODULE)
    saved = sorted((f for f in os.listdir(folder) if f.startswith("model.pth.tar-")),
                   key=lambda f: int(f.rsplit("-", 1)[1])) if osp.isdir(folder) else []
    if not saved:
        raise UserError(f"{folder} holds no checkpoint model.pth.tar-<epoch>: Fig. 4 reads the "
                        f"residual TaskRes saved; move {run_dir} aside and run it again")
    path = osp.join(folder, saved[-1])
    state = load_checkpoint(path)["state_dict"]
    if RESIDUAL_KEY not in state:
        raise UserError(f"{path} has no '{RESIDUAL_KEY}' (not a TaskRes residual checkpoint)")
    return float(state[RESIDUAL_KEY].float().abs().mean())


def residual_table(item, frame):
    """Fig. 4: per dataset, K, zero-shot accuracy, 1/(K * zero-shot accuracy) and the mean
    residual magnitude over the seeds of the largest shot count."""
    zero = frame[frame["method"] == paper.ZERO_SHOT.method].drop_duplicates("dataset")
    trained = frame[(frame["method"] == paper.TASKRES.method) &
                    (frame["shots"] == max(item.shots))].drop_duplicates("path")
    lines = []
    for dataset in item.datasets:
        zs = zero[zero["dataset"] == dataset].iloc[0]
        runs = trained[trained["dataset"] == dataset]
        classes = zs["num_classes"]
        magnitudes = [residual_magnitude(r.path) for r in runs.itertuples()
                      if not np.isnan(r.value)]
        difficulty = (1.0 / (classes * zs["value"] / 100.0)
                      if classes and zs["value"] > 0 else np.nan)
        lines.append({"Dataset": display_name(dataset), "Classes K": classes,
                      "Zero-shot accuracy (%)": zs["value"],
                      "Relative transfer difficulty": difficulty,
                      "Residual magnitude": np.mean(magnitudes) if magnitudes else np.nan})
    return pd.DataFrame(lines).set_index("Dataset")


TABLES = {"shots": shots_table, "params": params_table, "backbones": backbones_table,
          "dg": dg_table, "datasets": datasets_table, "residual": residual_table}


def paper_table(item, frame):
    return TABLES[item.layout](item, frame)


def to_markdown(item, table, note=""):
    """The table as Markdown: a title line, then the table (two decimals, '–' for missing)."""
    shown = table.reset_index()
    text = shown.to_markdown(index=False, floatfmt=".2f", missingval="–")
    return f"## {item.title}\n\n{text}\n{note}"


def narrowing_flags(item, seeds):
    """parse_results.py flags that select a narrowed grid (none for the paper's own)."""
    full = paper.ITEMS[item.name]
    flags = ""
    for flag, mine, theirs in (("--datasets", item.datasets, full.datasets),
                               ("--shots", item.shots, full.shots),
                               ("--backbones", item.backbones, full.backbones),
                               ("--targets", item.dg_targets, full.dg_targets),
                               ("--seeds", tuple(seeds), SEEDS)):
        if tuple(mine) != tuple(theirs):
            flags += f" {flag} " + " ".join(shlex.quote(str(v)) for v in mine)
    return flags


def _write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def render_item(output, name, datasets=None, shots=None, seeds=None, backbones=None,
                targets=None, allow_partial=False, markdown=None, csv=None, plot=None):
    """Write `name`'s Markdown, CSV (and PNG for figures; default paths
    `<output>/paper/<name>.*`) and return the Markdown. Missing runs stop it (UserError with
    the command that makes them) unless `allow_partial`."""
    if not osp.isdir(output):
        raise UserError(f"{output} is not a folder: give the output root the paper command wrote "
                        f"(OUTPUT, default output)")
    item = paper.narrowed(paper.get_item(name), datasets, shots, backbones, targets)
    if plot and not item.plot:
        raise UserError(f"--plot {plot}: {name} is a table; the figures are "
                        f"{', '.join(n for n, i in paper.ITEMS.items() if i.plot)}")
    seeds = tuple(seeds or SEEDS)
    frame = runs_frame(item, output, seeds)
    note = ""
    if frame["value"].isna().any():
        message = missing_message(item, frame, output, narrowing_flags(item, seeds))
        if not allow_partial:
            raise UserError(message)
        note = "\n> Partial: " + message.replace("\n", "\n> ") + "\n"
    table = paper_table(item, frame)
    narrowed = narrowing_flags(item, seeds)
    if narrowed:  # say so: the title names the paper's grid
        note = f"\nNot the paper's grid: narrowed to{narrowed}.\n" + note
    text = to_markdown(item, table, note)
    folder = osp.join(output, "paper")
    outputs = [(markdown or osp.join(folder, f"{name}.md"), lambda p: _write_text(p, text)),
               (csv or osp.join(folder, f"{name}.csv"), table.to_csv)]
    if item.plot:
        from .paper_plots import plot_item  # matplotlib only for the figures
        outputs.append((plot or osp.join(folder, f"{name}.png"),
                        lambda p: plot_item(item, table, p, frame)))
    written = []
    for path, write in outputs:
        os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
        write(path)
        written.append(path)
    return text, written
