"""Results tables on pandas: runs (`collect.runs_frame`) aggregated into cells of (method
label, dataset, shots) and averages over datasets, written as Markdown or tidy CSV."""
import math
from dataclasses import dataclass

import pandas as pd

from .benchmarks import BENCHMARKS, display_name
from .collect import ResultsError, runs_frame

NO_SEED = -1  # the seed key of seedless (zero-shot) runs
FAST_TAG = " [fast]"  # label suffix of runs on the fast pipeline (collect.add_labels)
KEYS = ["label", "dataset", "shots"]
DASH = "—"


def spread_of(std, n, ci95):
    """Population std, or the 95% confidence half-width 1.96*std/sqrt(n)."""
    return 1.96 * std / math.sqrt(n) if ci95 and n else std


def seed_column(seed, separator="_"):
    return "run" if seed == NO_SEED else f"seed{separator}{seed}"


def cell_frame(runs, keyword, seeds, index, ci95=False):
    """One row per (label, dataset, shots) of `index`: a `seed_<s>` column per seed (`run` when
    seedless), n, mean, spread, expected, complete and `problems` (why it is incomplete)."""
    runs = runs.assign(seed=runs.seed.fillna(NO_SEED).astype(int))
    seedless = runs.groupby("label").seed.agg(lambda s: bool((s == NO_SEED).all()))
    expected_seeds = {label: [NO_SEED] if seedless.get(label, False) else list(seeds)
                      for label in index.get_level_values("label").unique()}
    wanted = runs.seed.isin(seeds) | runs.label.map(seedless)
    done = runs[wanted & runs.finished]
    values = (done.groupby(KEYS + ["seed"])[keyword].last().unstack("seed")
              if len(done) else pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=KEYS)))
    wanted_columns = set().union(*expected_seeds.values()) if expected_seeds else set()
    values = values.reindex(index=index, columns=sorted(set(values.columns) | wanted_columns))
    cells = pd.DataFrame({"n": values.count(axis=1), "mean": values.mean(axis=1),
                          "std": values.std(axis=1, ddof=0)}, index=index)
    cells["spread"] = [spread_of(s, n, ci95) for s, n in zip(cells["std"], cells.n)]
    cells["expected"] = [len(expected_seeds[label]) for label in index.get_level_values(0)]
    cells["complete"] = cells.n >= cells.expected
    cells["seedless"] = [expected_seeds[label] == [NO_SEED] for label in index.get_level_values(0)]
    unfinished = {key: dict(zip(g.seed, g.path))
                  for key, g in runs[wanted & ~runs.finished].groupby(KEYS)}
    left_out = {key: dict(zip(g.seed, g.path)) for key, g in runs[~wanted].groupby(KEYS)}
    problems = []
    for key in index:
        row = values.loc[key]
        have = {seed for seed in row.index if pd.notna(row[seed])}
        late, extra = unfinished.get(key, {}), left_out.get(key, {})
        if not have and not late and not extra:
            problems.append(["no runs"])
            continue
        why = [f"{seed_column(s, ' ')} unfinished ({late[s]})" if s in late
               else f"{seed_column(s, ' ')} missing"
               for s in expected_seeds[key[0]] if s not in have]
        why += [f"{seed_column(s, ' ')} left out, not in --seeds ({path})"
                for s, path in sorted(extra.items())]
        problems.append(why)
    cells["problems"] = problems
    cells["unfinished"] = [unfinished.get(key, {}) for key in index]
    return pd.concat([values.rename(columns=seed_column), cells], axis=1)


def seed_columns(cells):
    return [c for c in cells.columns if c == "run" or c.startswith("seed_")]


def average_frame(cells, datasets, allow_partial=False, ci95=False):
    """One row per (label, shots): the mean of the cell means over `datasets`, only on a
    complete grid unless `allow_partial`. Its spread is that of the per-seed averages (seed
    noise, not dataset spread), given only when every averaged cell has the same seeds."""
    rows = {}
    in_average = cells[cells.index.get_level_values("dataset").isin(list(datasets))]
    for key, group in in_average.groupby(level=["label", "shots"], sort=False):
        usable = group[group.n > 0]
        n_complete, expected = int(group.complete.sum()), len(group)
        partial = n_complete < expected
        mean = spread = float("nan")
        averaged = len(usable) and (allow_partial or not partial)
        if averaged:
            mean = usable["mean"].mean()
            present = usable[seed_columns(usable)].notna()
            columns = present.columns[present.iloc[0]]
            if (present == present.iloc[0]).all().all() and len(columns) > 1:
                per_seed = usable[columns].mean()
                spread = spread_of(per_seed.std(ddof=0), len(per_seed), ci95)
        rows[key] = dict(mean=mean, spread=spread, n=len(usable) if averaged else 0,
                         n_complete=n_complete, expected=expected,
                         partial=bool(averaged and partial))
    return pd.DataFrame.from_dict(rows, orient="index")


@dataclass
class Tables:
    """The few-shot tables of an output tree: one per label, rows datasets, columns shots."""
    runs: pd.DataFrame  # collect.runs_frame
    cells: pd.DataFrame  # cell_frame, in table order
    averages: pd.DataFrame  # average_frame
    averaged: list  # the datasets the averages are over

    @property
    def labels(self):
        return list(dict.fromkeys(self.cells.index.get_level_values("label")))


def fewshot_tables(root, datasets, seeds, shots=None, keyword="accuracy", test_log=False,
                   allow_partial=False, ci95=False):
    """The tables of an output tree: its runs on `datasets` (None: every dataset found, the 11
    benchmarks averaged) at `shots` (None: the shots each method ran). Datasets found beyond
    `datasets` get rows but stay out of the average."""
    runs = runs_frame(root, keyword, test_log, datasets)
    if shots:
        runs = runs[runs.shots.isin(shots)]
    check_one_subset_per_cell(runs)
    averaged = list(datasets or BENCHMARKS)
    index = []
    for label, group in runs.groupby("label"):  # labels in sorted order
        rows = averaged + sorted(set(group.dataset) - set(averaged))
        index += [(label, d, k) for d in rows for k in sorted(shots or set(group.shots))]
    index = pd.MultiIndex.from_tuples(index, names=KEYS)
    cells = cell_frame(runs, keyword, seeds, index, ci95)
    return Tables(runs, cells, average_frame(cells, averaged, allow_partial, ci95), averaged)


def check_one_subset_per_cell(runs):
    """A cell never averages runs of one seed made on different few-shot subsets (their
    result.json subset hashes differ): one error naming the runs."""
    done = runs[runs.finished & runs.subset_hash.notna()]
    for key, group in done.groupby(KEYS + ["seed"]):
        if group.subset_hash.nunique() > 1:
            listed = "; ".join(f"{p} ({h[:12]})" for p, h in zip(group.path, group.subset_hash))
            raise ResultsError(f"{key[0]}, {key[1]}, {key[2]} shots, seed {key[3]}: runs on different few-shot "
                               f"subsets would share one cell: {listed}. Keep one of them (move the others "
                               "out of the tree) or compare them in separate tables.")


def cost_markdown(tables):
    """Per method: trainable parameters, mean wall time and peak memory of its runs, by dataset
    and shots (from result.json's `cost`), and the devices they ran on."""
    runs = tables.runs[tables.runs.finished].copy()
    for field in ("wall_s", "host_peak_mb", "device_peak_mb"):
        runs[field] = [c.get(field) if isinstance(c, dict) else None for c in runs.cost]
    runs["device"] = [c.get("device") if isinstance(c, dict) else None for c in runs.cost]
    out = []
    for label, group in runs.groupby("label", sort=False):
        rows = group.groupby(["dataset", "shots"]).agg(
            params=("trainable_params", "max"), wall_s=("wall_s", "mean"),
            host_peak_mb=("host_peak_mb", "max"), device_peak_mb=("device_peak_mb", "max"))
        rows.index = [f"{display_name(d)}, {shots_header(k)}" for d, k in rows.index]
        devices = ", ".join(sorted({str(d) for d in group.device if d}))
        out += ["", f"## {label}: cost per run (devices: {devices or 'not recorded'})", "",
                markdown(rows.astype(object).where(rows.notna(), DASH), "Cell")]
    return "\n".join(out).lstrip("\n") + "\n"


def vs_published_markdown(tables):
    """Ours (mean ± std over seeds) beside each published number of the same method and
    backbone (experiments/published.py and the method files' `PUBLISHED`), the difference, and
    whether the published value lies inside our seed range (min to max)."""
    from .published import series_of
    rows = []
    runs = tables.runs[tables.runs.finished]
    for label in tables.labels:
        mine = runs[runs.label == label]
        backbones = {b for b in mine.backbone if isinstance(b, str)}
        series = [s for trainer in sorted(set(mine.trainer)) for s in series_of(trainer, label)]
        for s in series:
            if backbones and s.backbone not in backbones:
                continue
            for shots, published in sorted(s.points.items()):
                if s.dataset == "average":
                    key = (label, shots)
                    found = key in tables.averages.index and tables.averages.loc[key, "n"] > 0
                    cell = tables.averages.loc[key] if found else None
                    values = []
                else:
                    key = (label, s.dataset, shots)
                    found = key in tables.cells.index and tables.cells.loc[key, "n"] > 0
                    cell = tables.cells.loc[key] if found else None
                    values = [v for v in cell[seed_columns(tables.cells)] if pd.notna(v)] if found else []
                ours = format_average(cell) if s.dataset == "average" and found else (
                    format_cell(cell) if found else DASH)
                diff = f"{cell['mean'] - published:+.2f}" if found else DASH
                inside = ("yes" if min(values) <= published <= max(values) else "no") if values else DASH
                rows.append([label, display_name(s.dataset), shots_header(shots), s.backbone, ours,
                             f"{published:.2f}", diff, inside, s.source])
    frame = pd.DataFrame(rows, columns=["Method", "Dataset", "Shots", "Backbone", "Ours", "Published",
                                        "Diff", "In seed range", "Source"])
    return markdown(frame.set_index("Method"), "Method") + "\n"


# ---- text --------------------------------------------------------------------------------

def format_cell(cell):
    if not cell.n:
        return DASH
    text = f"{cell['mean']:.2f}" + (f" ± {cell.spread:.2f}" if cell.n > 1 else "")
    if cell.seedless:
        return text
    return f"{text} ({cell.n if cell.complete else f'{cell.n}/{cell.expected}'})"


def format_average(avg):
    if pd.isna(avg["mean"]):
        return f"incomplete ({avg.n_complete}/{avg.expected})"
    text = f"{avg['mean']:.2f}" + ("" if pd.isna(avg.spread) else f" ± {avg.spread:.2f}")
    if avg.partial:
        return f"{text} (partial: {avg.n} averaged, {avg.n_complete}/{avg.expected} complete)"
    return f"{text} ({avg.n} {'dataset' if avg.n == 1 else 'datasets'})"


def shots_header(k):
    return f"{k} shot" if k == 1 else f"{k} shots"


def markdown(frame, first_column):
    """A table of strings as GitHub Markdown, its index as the first column."""
    return frame.rename_axis(first_column).reset_index().to_markdown(
        index=False, tablefmt="github", disable_numparse=True)


def incomplete_notes(entries):
    """Markdown list of `where: problems` of the incomplete cells; rows without any run are
    named together on one line. entries: (where, [(suffix, cell row)])."""
    empty, lines = [], []
    for where, cells in entries:
        if all(cell.problems == ["no runs"] for _, cell in cells):
            empty.append(where)
            continue
        lines += [f"- {where}{suffix}: {'; '.join(cell.problems)}"
                  for suffix, cell in cells if cell.problems]
    if empty:
        lines.insert(0, f"- no runs: {', '.join(empty)}")
    return ["", "Incomplete or left out:"] + lines if lines else []


def fewshot_markdown(tables, keyword, ci95=False, per_seed=False):
    out = []
    for label in tables.labels:
        cells = tables.cells.loc[label]
        seeded = not cells.seedless.all()
        what = (f"mean ± {'ci95' if ci95 else 'std'} over seeds, (n) = seeds in the cell" if seeded
                else "single runs")
        rows = list(dict.fromkeys(cells.index.get_level_values("dataset")))
        grid = cells.apply(format_cell, axis=1).unstack("shots").reindex(rows)
        grid.loc[f"Average ({len(tables.averaged)} datasets)"] = \
            tables.averages.loc[label].apply(format_average, axis=1)
        grid.index = [display_name(d) for d in grid.index]
        grid.columns = [shots_header(k) for k in grid.columns]
        out += ["", f"## {label}: {keyword} (%), {what}", "", markdown(grid, "Dataset")]
        extra = [display_name(d) for d in rows if d not in tables.averaged]
        if extra:
            out += ["", f"Not in the average: {', '.join(extra)}"]
        out += published_beside(label, cells, tables.runs)
        out += incomplete_notes([(display_name(d), [(f", {shots_header(k)}", cell)
                                          for k, cell in cells.loc[d].iterrows()]) for d in rows])
        out += _flat_notes(label, cells, rows)
        if per_seed and seeded:
            out += ["", "Per seed:", "", _per_seed_table(cells)]
    if any(label.endswith(FAST_TAG) for label in tables.labels):
        out += ["", f"{FAST_TAG.strip()}: trained on the fast pipeline (cached features of a few augmented "
                    "views per image; the reference's accuracy on average over seeds, not run for run)."]
    return "\n".join(out).lstrip("\n") + "\n"


def _flat_notes(label, cells, rows):
    """Say so when a trained method scores exactly the same at every shot count of a dataset:
    it did not learn from the shots at these settings."""
    flat = []
    for dataset in rows:
        means = cells.loc[dataset]
        means = means[(means.n > 0) & (means.index > 0)]["mean"]
        if len(means) > 1 and means.nunique() == 1:
            flat.append(display_name(dataset))
    if not flat:
        return []
    return ["", f"Did not learn: {label} scores exactly the same at every shot count on "
                f"{', '.join(flat)} (it does not move from its initialisation at these settings)."]


def published_beside(label, cells, runs):
    """Lines of a table of the published numbers a method declares (trainer file `PUBLISHED`)
    for the backbone its runs used, each with ours minus published; [] when there are none."""
    from trainers.common.dataset_names import dataset_name_of_stem

    from .published import declared_published
    mine = runs[runs.label == label]
    if mine.empty or mine.backbone.nunique() != 1:
        return []
    backbone = mine.backbone.iloc[0]
    published = declared_published(mine.trainer.iloc[0])
    numbers = published.get(backbone, {})
    if not numbers:
        return []
    rows = list(dict.fromkeys(cells.index.get_level_values("dataset")))
    grid = {}
    for dataset in rows:
        for shots, cell in cells.loc[dataset].iterrows():
            value = numbers.get(dataset_name_of_stem(dataset), {}).get(int(shots))
            text = DASH if value is None else f"{value:.2f}"
            if value is not None and cell.n:
                text += f" (ours {cell['mean'] - value:+.2f})"
            grid.setdefault(shots_header(shots), {})[display_name(dataset)] = text
    frame = pd.DataFrame(grid).reindex([display_name(d) for d in rows])
    return ["", f"Published ({backbone}; {published.get('source', 'source not given')}), ours minus published:",
            "", markdown(frame, "Dataset")]


def _per_seed_table(cells):
    ran = cells[(cells.n > 0) | cells.unfinished.map(bool)]
    late = {seed_column(s) for seeds in ran.unfinished for s in seeds}
    columns = [c for c in seed_columns(cells) if ran[c].notna().any() or c in late]
    table = ran[columns].apply(lambda col: col.map(lambda v: DASH if pd.isna(v) else f"{v:.2f}"))
    for (dataset, shots), pending in ran.unfinished.items():
        for seed in pending:
            table.loc[(dataset, shots), seed_column(seed)] = "unfinished"
    table.columns = [c.replace("_", " ") for c in columns]
    table["mean"] = ran.apply(format_cell, axis=1)
    table.index = [display_name(d) for d in ran.index.get_level_values(0)]
    table.insert(0, "Shots", [str(k) for k in ran.index.get_level_values(1)])
    return markdown(table, "Dataset")


# ---- CSV: one tidy row per cell and per average, the same numbers as the Markdown -----------

def tidy_rows(frame, table, quantity, dataset=None):
    """Tidy rows of cells, or of averages when `dataset` names their rows."""
    if dataset is not None:
        complete = frame["mean"].notna() & ~frame.partial.astype(bool)
        frame = frame.rename_axis(["label", "shots"]).assign(dataset=dataset, complete=complete)
    frame = frame.reset_index().rename(columns={"label": "method"})
    return frame.assign(table=table, quantity=quantity, complete=frame.complete.astype(int))


def fewshot_csv(tables, keyword):
    return pd.concat([tidy_rows(tables.cells, "fewshot", keyword),
                      tidy_rows(tables.averages, "fewshot", keyword, "average")]
                     ).sort_values("method", kind="stable")


def write_csv(path, frame, ci95=False):
    """The tidy rows; the spread column is named `std` or `ci95`, then one column per seed."""
    seeds = sorted((c for c in frame.columns if c.startswith("seed_")), key=lambda c: int(c[5:]))
    columns = ["table", "method", "dataset", "shots", "quantity", "mean", "spread", "n",
               "expected", "complete"]
    frame = frame.astype({"mean": float, "spread": float})
    frame[columns + seeds].rename(columns={"spread": "ci95" if ci95 else "std"}).to_csv(
        path, index=False, float_format="%.4f")
