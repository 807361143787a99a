"""Accuracy-versus-shots figure: a panel per dataset (and the average), a line per method with
the table's spread, chance level, the weights used, optionally the published numbers."""
import math
import os

import pandas as pd

from .benchmarks import display_name
from .published import PUBLISHED, published_for

AVERAGE = "average"


def _series(tables, label, panel):
    """(shots, means, spreads) of one method in one panel, only where a value exists."""
    if panel == AVERAGE:
        points = tables.averages.loc[label].dropna(subset=["mean"])
        return [(k, m, 0.0 if pd.isna(s) else s)
                for k, m, s in zip(points.index, points["mean"], points.spread)]
    cells = tables.cells.loc[label]
    if panel not in cells.index.get_level_values("dataset"):
        return []
    cells = cells.loc[panel]
    cells = cells[cells.n > 0]
    return [(k, m, s if n > 1 else 0.0)
            for k, m, s, n in zip(cells.index, cells["mean"], cells.spread, cells.n)]


def _panels(tables, published):
    panels = list(dict.fromkeys(tables.cells.index.get_level_values("dataset")))
    keep = [d for d in panels if any(_series(tables, label, d) for label in tables.labels)
            or (published and published_for(d))]
    return keep + [AVERAGE] if len(keep) > 1 else keep


def chance_level(runs, dataset):
    """100/classes of the dataset, as its finished runs recorded it; None when none did."""
    classes = runs[runs.finished & (runs.dataset == dataset)].num_classes.dropna().unique()
    return 100.0 / classes[0] if len(classes) == 1 else None


def weights_used(runs):
    """The weights the finished runs recorded ("random", or the file name), one phrase."""
    weights = sorted({os.path.basename(str(w)) if pd.notna(w) and w else "not recorded"
                      for w in runs[runs.finished].weights})
    return ", ".join(weights) if weights else "not recorded"


_OTHER_COLOURS = ("black", "dimgray", "saddlebrown", "olive", "darkmagenta", "teal")


def _published_colour(series, tables):
    """Colour of our table of the same trainer, so a published line sits next to ours;
    else a dark colour of its own per published method (the same in every panel)."""
    first_trainer = tables.runs.groupby("label").trainer.first()
    trainers = [first_trainer[label] for label in tables.labels]
    if series.trainer in trainers:
        return f"C{trainers.index(series.trainer) % 10}"
    trained = set(trainers)
    others = list(dict.fromkeys(s.method for s in PUBLISHED if s.trainer not in trained))
    return _OTHER_COLOURS[others.index(series.method) % len(_OTHER_COLOURS)]


def plot_fewshot(tables, path, keyword="accuracy", published=False):
    """Write the figure of `tables` (a `tables.Tables`) as PNG to `path` (needs no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(tables, published)
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    shots = tables.cells[tables.cells.n > 0].index.get_level_values("shots")
    all_shots = sorted({k for k in shots if k > 0})
    for ax, panel in zip(axes.flat, panels):
        chance = None if panel == AVERAGE else chance_level(tables.runs, panel)
        if chance is not None:
            ax.axhline(chance, color="gray", linestyle="-.", linewidth=1, label="chance level")
        for i, label in enumerate(tables.labels):
            color = f"C{i % 10}"
            ours = _series(tables, label, panel)
            for k, mean, err in ours:
                if k == 0:  # zero-shot: no shots axis position, a level to compare with
                    ax.axhline(mean, color=color, linestyle=":", label=label)
            points = [p for p in ours if p[0] > 0]
            if points:
                xs, ys, errs = zip(*points)
                ax.errorbar(xs, ys, yerr=errs, color=color, marker="o", markersize=4,
                            capsize=2, label=label)
        if published:
            for series in published_for(panel):
                color = _published_colour(series, tables)
                label = f"{series.method} (published)"
                if 0 in series.points:
                    ax.axhline(series.points[0], color=color, linestyle="--", label=label)
                xs = sorted(k for k in series.points if k > 0)
                if xs:
                    ax.plot(xs, [series.points[k] for k in xs], color=color, linestyle="--",
                            marker="x", label=label)
        ax.set_xscale("log", base=2)
        if all_shots:
            ax.set_xticks(all_shots)
        ax.set_xticklabels([str(k) for k in all_shots])
        ax.minorticks_off()
        ax.set(title="Average" if panel == AVERAGE else display_name(panel),
               xlabel="shots per class", ylabel=f"{keyword} (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    columns = max(1, min(len(handles), 2 * ncols, 4))  # a narrow figure gets a narrow legend
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=columns,
               fontsize="small")
    fig.suptitle(f"weights: {weights_used(tables.runs)}", fontsize="small", wrap=True)
    legend_rows = math.ceil(len(handles) / columns)
    # The legend (about 0.22 inch a row) and the title get room of their own below and above.
    below, above = 0.25 + 0.22 * legend_rows, 0.3
    fig.set_figheight(3.4 * nrows + below + above)
    fig.tight_layout(rect=(0, below / fig.get_figheight(), 1, 1 - above / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
