"""Tables of runs trained on one set of classes or one dataset and tested on another: base-to-new
(Base, New, HM), cross-dataset transfer and domain generalisation, with the papers' published
numbers beside ours. Built from the few-shot tables' cells and averages (experiments/tables.py)."""
import pandas as pd

from .benchmarks import BENCHMARKS, display_name
from .collect import add_labels
from .tables import (DASH, KEYS, average_frame, cell_frame, format_average, format_cell, incomplete_notes, markdown,
                     shots_header, spread_of, tidy_rows)


def _labelled_together(*frames):
    """Runs of several trees, labelled together so a method has one label in all of them."""
    runs = add_labels(pd.concat([f.assign(part=i) for i, f in enumerate(frames)],
                                ignore_index=True))
    return [runs[runs.part == i] for i in range(len(frames))]


def harmonic_mean(base, new):
    """HM of base and new accuracy, the base-to-new summary number."""
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


def base2new_cells(base_runs, new_runs, datasets, seeds, keyword, allow_partial=False, ci95=False):
    """(base cells, new cells, base averages, new averages) at the shots either tree ran."""
    base, new = _labelled_together(base_runs, new_runs)
    both = pd.concat([base, new])
    index = pd.MultiIndex.from_tuples([(label, d, k) for label, group in both.groupby("label")
                                       for k in sorted(set(group.shots)) for d in datasets],
                                      names=KEYS)
    base_cells = cell_frame(base, keyword, seeds, index, ci95)
    new_cells = cell_frame(new, keyword, seeds, index, ci95)
    return (base_cells, new_cells, average_frame(base_cells, datasets, allow_partial, ci95),
            average_frame(new_cells, datasets, allow_partial, ci95))


def dg_cells(source_runs, target_runs, source, targets, seeds, keyword,
             allow_partial=False, ci95=False):
    """(source and target cells, target averages) at the shots the targets were tested with."""
    source_runs, target_runs = _labelled_together(source_runs, target_runs)
    tested = sorted({(l, k) for l, k in zip(target_runs.label, target_runs.shots)})
    source_cells = cell_frame(source_runs, keyword, seeds, pd.MultiIndex.from_tuples(
        [(l, source, k) for l, k in tested], names=KEYS), ci95)
    target_cells = cell_frame(target_runs, keyword, seeds, pd.MultiIndex.from_tuples(
        [(l, t, k) for l, k in tested for t in targets], names=KEYS), ci95)
    return (pd.concat([source_cells, target_cells]),
            average_frame(target_cells, targets, allow_partial, ci95))


PUBLISHED_ORDER = ("ZeroshotCLIP", "CoOp", "CoCoOp", "KgCoOp", "MaPLe", "PromptSRC")  # the papers' row order


def _published():
    """Published numbers by our trainer name (trainers.common.published; the method files
    register them), in the papers' row order."""
    from trainers.common.experiment import load_methods
    from trainers.common.published import PUBLISHED
    load_methods()  # imports the method files, which register their numbers
    order = [t for t in PUBLISHED_ORDER if t in PUBLISHED] + sorted(set(PUBLISHED) - set(PUBLISHED_ORDER))
    return {t: PUBLISHED[t] for t in order}


def trainers_by_label(*frames):
    """{method label: trainer} of the runs of one or more trees, labelled together."""
    runs = add_labels(pd.concat(frames, ignore_index=True))
    return dict(zip(runs.label, runs.trainer))


def _hm_seed_spread(base, new, ci95=False):
    """Spread over seeds of the per-seed HM (seeds with both a base and a new result)."""
    seeds = [c for c in base.index if isinstance(c, str) and c.startswith("seed_") and c in new.index
             and pd.notna(base[c]) and pd.notna(new[c])]
    if len(seeds) < 2:
        return float("nan")
    values = pd.Series([harmonic_mean(base[c], new[c]) for c in seeds])
    return spread_of(values.std(ddof=0), len(values), ci95)


def _signed(value):
    return DASH if pd.isna(value) else f"{value:+.2f}"


def base2new_markdown(b2n, keyword, trainers=None, ci95=False):
    """Per method and shots: Base, New, HM (mean ± spread over seeds; HM of the means, its
    spread that of the per-seed HMs), the average row's HM from the averaged Base and New, and
    the published numbers of the method (by trainer) beside each row with our difference."""
    base_cells, new_cells, base_avg, new_avg = b2n
    published = _published()
    trainers = trainers or {}
    out = []
    for (label, shots), base in base_cells.groupby(level=["label", "shots"], sort=False):
        new = new_cells.loc[base.index]
        paper = published.get(trainers.get(label))
        rows, ours = [], []
        for key in base.index:
            b, n = base.loc[key], new.loc[key]
            hm = harmonic_mean(b["mean"], n["mean"]) if b.n and n.n else float("nan")
            spread = _hm_seed_spread(b, n, ci95) if b.n and n.n else float("nan")
            text = DASH if pd.isna(hm) else f"{hm:.2f}" + ("" if pd.isna(spread) else f" ± {spread:.2f}")
            rows.append([format_cell(b), format_cell(n), text])
            ours.append((key[1], b["mean"] if b.n else float("nan"), n["mean"] if n.n else float("nan"), hm))
        b, n = base_avg.loc[(label, shots)], new_avg.loc[(label, shots)]
        hm = float("nan") if pd.isna(b["mean"]) or pd.isna(n["mean"]) else harmonic_mean(b["mean"], n["mean"])
        rows.append([format_average(b), format_average(n), "incomplete" if pd.isna(hm) else f"{hm:.2f}"])
        ours.append(("average", b["mean"], n["mean"], hm))
        names = [display_name(d) for d in base.index.get_level_values(1)] + [f"Average ({len(base)} dataset{'s' if len(base) != 1 else ''})"]
        grid = pd.DataFrame(rows, columns=["Base", "New", "HM"], index=names)
        if paper is not None:
            # The paper's average is over the 11 benchmarks: compared only with ours over the same.
            comparable = set(base.index.get_level_values(1)) == set(BENCHMARKS)
            for i, column in enumerate(("Base", "New", "HM")):
                values = [paper.base2new.get(d, (float("nan"),) * 3)[i] if d != "average" or comparable
                          else float("nan") for d, *_ in ours]
                grid[f"Paper {column}"] = [DASH if pd.isna(v) else f"{v:.2f}" for v in values]
                grid[f"Δ {column}"] = [_signed(o[1 + i] - v) for o, v in zip(ours, values)]
        out += ["", f"## {label}, {shots_header(shots)}: base-to-new {keyword} (%)", "", markdown(grid, "Dataset"),
                "", "HM = 2·base·new/(base+new) of the means (± the spread of the per-seed HMs); the average "
                "row's HM is the HM of the two averages."]
        if paper is not None:
            out += [f"Paper: {paper.label}, ViT-B/16, 16 shots ({paper.source}); Δ = ours − paper."]
        out += incomplete_notes([(display_name(d), [(", base", base.loc[key]), (", new", new.loc[key])])
                       for key in base.index for d in [key[1]]])
    out += published_base2new_markdown(b2n, trainers)
    return "\n".join(out).lstrip("\n") + "\n"


def published_base2new_markdown(b2n, trainers):
    """One comparison table: HM per dataset and the average Base/New/HM, published rows (CLIP,
    CoOp, CoCoOp, KgCoOp, MaPLe, PromptSRC, ...) then ours."""
    base_cells, new_cells, base_avg, new_avg = b2n
    datasets = list(dict.fromkeys(base_cells.index.get_level_values("dataset")))
    columns = [display_name(d) for d in datasets] + ["Avg Base", "Avg New", "Avg HM"]
    rows = {}
    for paper in _published().values():
        values = [paper.base2new[d][2] if d in paper.base2new else float("nan") for d in datasets]
        average = paper.base2new.get("average", (float("nan"),) * 3)
        rows[f"{paper.label} (paper)"] = values + list(average)
    for (label, shots), base in base_cells.groupby(level=["label", "shots"], sort=False):
        new = new_cells.loc[base.index]
        values = [harmonic_mean(b, n) if nb and nn else float("nan")
                  for b, n, nb, nn in zip(base["mean"], new["mean"], base.n, new.n)]
        b, n = base_avg.loc[(label, shots)]["mean"], new_avg.loc[(label, shots)]["mean"]
        hm = float("nan") if pd.isna(b) or pd.isna(n) else harmonic_mean(b, n)
        rows[f"{label}, {shots_header(shots)} (ours)"] = values + [b, n, hm]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    frame = frame.apply(lambda col: col.map(lambda v: DASH if pd.isna(v) else f"{v:.2f}"))
    return ["", "## Base-to-new HM per dataset, published (ViT-B/16, 16 shots) and ours", "",
            markdown(frame, "Method"), "", "Sources: " + "; ".join(
                f"{p.label}: {p.source}" for p in _published().values()) + "."]


def base2new_report(root, datasets=None, seeds=(1, 2, 3), keyword="accuracy", allow_partial=False, ci95=False,
                    shots=None):
    """(Markdown, tidy CSV) of the base-to-new tree `root` (holding train_base/ and test_new/).
    Raises ValueError when it holds no run."""
    import os.path as osp
    from . import layout
    from .collect import collect_runs
    base = collect_runs(osp.join(root, layout.TRAIN_BASE_DIR), keyword, False, datasets)
    new = collect_runs(osp.join(root, layout.TEST_NEW_DIR), keyword, True, datasets)
    if not len(base) + len(new):
        raise ValueError(f"no finished base-to-new runs below {root} yet")
    if shots:
        base, new = base[base.shots.isin(shots)], new[new.shots.isin(shots)]
    b2n = base2new_cells(base, new, datasets or BENCHMARKS, seeds, keyword, allow_partial, ci95)
    trainers = trainers_by_label(base, new)
    return base2new_markdown(b2n, keyword, trainers, ci95), base2new_csv(b2n)


def xd_markdown(dg, source, targets, keyword, trainers=None):
    """The cross-dataset table (dg_markdown's layout), then the published rows with our difference."""
    cells, averages = dg
    text = dg_markdown(dg, source, targets, keyword).replace(
        "## Domain generalisation", "## Cross-dataset transfer", 1)
    trainers = trainers or {}
    datasets = [source] + list(targets)
    rows = {}
    for label, shots in averages.index:
        paper = _published().get(trainers.get(label))
        if paper is None or not paper.xd:
            continue
        ours = [cells.loc[(label, d, shots)]["mean"] if (label, d, shots) in cells.index else float("nan")
                for d in datasets] + [averages.loc[(label, shots)]["mean"]]
        theirs = [paper.xd.get(d, float("nan")) for d in datasets]
        theirs.append(sum(theirs[1:]) / len(theirs[1:]) if all(not pd.isna(v) for v in theirs[1:]) else float("nan"))
        rows[f"{paper.label} (paper)"] = [DASH if pd.isna(v) else f"{v:.2f}" for v in theirs]
        rows[f"Δ {label}, {shots_header(shots)}"] = [_signed(o - t) for o, t in zip(ours, theirs)]
    if not rows:
        return text
    columns = [display_name(d) for d in datasets] + ["Target average"]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=columns)
    sources = "; ".join(sorted({f"{p.label}: {p.source}" for p in _published().values() if p.xd}))
    return text + "\n".join(["", "Published (ViT-B/16, 16 shots) and ours − paper:", "",
                             markdown(frame, "Method"), "", f"Sources: {sources}.", ""])


def dg_markdown(dg, source, targets, keyword):
    cells, averages = dg
    datasets = [source] + list(targets)
    texts = cells.apply(format_cell, axis=1).unstack("dataset")[datasets]
    texts.columns = [f"{display_name(source)} (source)"] + [display_name(t) for t in targets]
    texts["Target average"] = averages.apply(format_average, axis=1).reindex(texts.index)
    texts.insert(0, "Shots", [str(k) for k in texts.index.get_level_values("shots")])
    texts.index = texts.index.get_level_values("label")
    out = [f"## Domain generalisation: {keyword} (%), trained on {display_name(source)}", "",
           markdown(texts, "Method")]
    out += incomplete_notes([(f"{label}, {shots_header(shots)}",
                    [(f", {display_name(d)}", cells.loc[(label, d, shots)]) for d in datasets])
                   for label, shots in averages.index])
    return "\n".join(out) + "\n"


def _hm_rows(base, new):
    """HM rows of tidy base rows and the new rows in the same order."""
    hm = base[["table", "method", "dataset", "shots", "expected"]].assign(quantity="hm")
    hm["mean"] = [harmonic_mean(b, n) if pd.notna(b) and pd.notna(n) else float("nan")
                  for b, n in zip(base["mean"], new["mean"])]
    hm["n"] = [min(b, n) for b, n in zip(base.n, new.n)]
    hm["complete"] = base.complete.values & new.complete.values
    return hm


def base2new_csv(b2n):
    base_cells, new_cells, base_avg, new_avg = b2n
    base, new = tidy_rows(base_cells, "base2new", "base"), tidy_rows(new_cells, "base2new", "new")
    base_average = tidy_rows(base_avg, "base2new", "base", "average")
    new_average = tidy_rows(new_avg, "base2new", "new", "average")
    return pd.concat([base, new, _hm_rows(base, new), base_average, new_average,
                      _hm_rows(base_average, new_average)]
                     ).sort_values(["method", "shots"], kind="stable")


def dg_csv(dg, keyword):
    cells, averages = dg
    return pd.concat([tidy_rows(cells, "dg", keyword),
                      tidy_rows(averages, "dg", keyword, "target_average")]
                     ).sort_values(["method", "shots"], kind="stable")
