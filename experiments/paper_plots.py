"""The PNG figures of the TaskRes paper items (Fig. 1, 3 and 4) from their rendered tables."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from . import paper  # noqa: E402
from .paper_render import AVERAGE  # noqa: E402


def _shots(column):
    return int(column.split("-")[0])


def _method_lines(ax, table, zero_shot_label):
    """One line per method over the shot columns; zero-shot CLIP as a flat dashed line."""
    columns = [c for c in table.columns if c.endswith("-shot")]
    shots = [_shots(c) for c in columns]
    for label, values in table[columns].iterrows():
        if label == zero_shot_label:
            ax.plot(shots, values.to_numpy(float), "k--", label=label)
        else:
            ax.plot(shots, values.to_numpy(float), "o-", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots)
    ax.set_xticklabels([str(k) for k in shots])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("accuracy (%)")


def plot_params(item, table, path, frame):
    """Fig. 1: accuracy against tuned parameters, one point per method and shot count (a
    method's parameter count may grow with the shots: Tip-Adapter-F's cache)."""
    fig, ax = plt.subplots(figsize=(7, 5))
    columns = [c for c in table.columns if c.endswith("-shot")]
    for label, line in table.iterrows():
        params = []
        for column in columns:
            found = frame[(frame["row"] == label) & (frame["shots"] == _shots(column))]
            counts = found["tuned_params"].dropna().astype(float)
            params.append(counts.mean() if len(counts) else
                          (0.0 if label == paper.ZERO_SHOT.label else np.nan))
        accuracy = line[columns].to_numpy(float)
        ax.plot(params, accuracy, "o-", label=label)
        ax.annotate(f"{label} ({columns[-1]})", (params[-1], accuracy[-1]),
                    textcoords="offset points", xytext=(5, 5), fontsize=7)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("tuned parameters")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"ImageNet, {columns[0]} to {columns[-1]}", fontsize=9)
    ax.legend(fontsize=8)
    _save(fig, item, path)


def plot_datasets(item, table, path, frame=None):
    """Fig. 3: accuracy against shots, one panel per dataset and one for the average."""
    names = list(dict.fromkeys(table.index.get_level_values(0)))
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        _method_lines(ax, table.loc[name], paper.ZERO_SHOT.label)
        ax.set_title(name if name != AVERAGE else f"{AVERAGE} over {len(names) - 1} datasets",
                     fontsize=10)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    _save(fig, item, path)


def plot_residual(item, table, path, frame=None):
    """Fig. 4: one labelled point per dataset."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    x = table["Relative transfer difficulty"].to_numpy(float)
    y = table["Residual magnitude"].to_numpy(float)
    ax.scatter(x, y)
    for name, xi, yi in zip(table.index, x, y):
        ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("relative transfer difficulty 1 / (K · zero-shot accuracy)")
    ax.set_ylabel("mean |residual|")
    _save(fig, item, path)


def _save(fig, item, path):
    fig.suptitle(item.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PLOTS = {"params": plot_params, "datasets": plot_datasets, "residual": plot_residual}


def plot_item(item, table, path, frame):
    """The item's figure from its table (and, for Fig. 1, the per-run tuned parameters)."""
    PLOTS[item.layout](item, table, path, frame)
