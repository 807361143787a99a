"""The reference aggregator's output: per-run values and mean +- std over the seed folders of
one experiment (`parse_results.py DIR`), or the average over experiments (`--multi-exp`).

Output lines match the reference exactly::

    Parsing files in DIR
    file: DIR/seed1/log.txt. accuracy: 81.00%.
    ===
    Summary of directory: DIR
    * accuracy: 81.00% +- 0.50%
    ===
"""
import os.path as osp
import statistics
import sys

from .collect import ResultsError, read_run_result
from .layout import has_run_files, list_subdirs
from .tables import spread_of


def summarize_experiment(directory, keyword, signal, ci95=False):
    """Print the per-run values and the summary of one experiment folder; return the mean."""
    if not osp.isdir(directory):
        raise ResultsError(f"{directory} is not a folder")
    print(f"Parsing files in {directory}")
    # A seedless run (zero-shot) is its own experiment folder: read it as its one run.
    runs = list_subdirs(directory) or ([""] if has_run_files(directory) else [])
    values = []
    for name in runs:
        path = osp.join(directory, name) if name else directory
        result = read_run_result(path, keyword, signal)
        if result is None:
            why = ("it holds no log.txt but sub-folders: is DIR one level too high?"
                   if not has_run_files(path) and list_subdirs(path)
                   else f"no '{keyword}' result after '{signal}' (run unfinished or crashed?)")
            print(f"[parse_results] left out {path}: {why}", file=sys.stderr)
            continue
        print(f"file: {result.source}. {keyword}: {result.value:.2f}%. ")
        values.append(result.value)
    if not values:
        raise ResultsError(f"no finished run with a '{keyword}' result in {directory} (looked "
                           f"for result.json or a '{signal}' line in each sub-folder's log.txt)")
    mean = statistics.fmean(values)
    print("===")
    print(f"Summary of directory: {directory}")
    spread = spread_of(statistics.pstdev(values), len(values), ci95)
    print(f"* {keyword}: {mean:.2f}% +- {spread:.2f}%")
    print("===")
    return mean


def summarize_experiments(directory, keyword, signal, ci95=False):
    """`--multi-exp`: summarize every experiment folder of `directory`, then their average."""
    if not osp.isdir(directory):
        raise ResultsError(f"{directory} is not a folder")
    experiments = list_subdirs(directory)
    if not experiments:
        raise ResultsError(f"no experiment folders in {directory}")
    means = [summarize_experiment(osp.join(directory, name), keyword, signal, ci95)
             for name in experiments]
    print("Average performance")
    print(f"* {keyword}: {statistics.fmean(means):.2f}%")
    return means
