"""What a sweep prints at the end (or with `--status`): the results table of the runs that
finished (as `parse_results.py --table` prints it) and the failed runs with their log."""
import sys
from collections import Counter

from fewshot_grid.tables import fewshot_markdown, fewshot_tables

from .runs import STATES


def state_counts(states):
    counts = Counter(s.state for s in states)
    return ", ".join(f"{counts[name]} {name}" for name in STATES if counts[name])


def print_failures(failures, out=sys.stdout):
    """failures: (run folder, why, log path); prints nothing when there are none."""
    if not failures:
        return
    print(f"\nFailed runs ({len(failures)}); their log, then run the same sweep again to "
          f"rerun only them:", file=out)
    for folder, why, log in failures:
        print(f"  {folder}: {why}\n    log: {log}", file=out)


def print_table(output, runs):
    """The results table of the sweep's datasets, shots and seeds (finished runs only; an
    incomplete grid is marked, not averaged)."""
    datasets = list(dict.fromkeys(r.dataset for r in runs))  # in the sweep's order
    shots = sorted({r.shots for r in runs})
    seeds = sorted({r.seed for r in runs if r.seed is not None}) or [1, 2, 3]
    mixed = 0 in shots and len(shots) > 1  # evaluation-only beside trained methods
    print(f"\n[sweep] results (python parse_results.py {output} --table --datasets "
          f"{' '.join(datasets)}{'' if mixed else ' --shots ' + ' '.join(map(str, shots))} "
          f"--seeds {' '.join(map(str, seeds))}):")
    tables = fewshot_tables(output, datasets, seeds, None if mixed else shots)
    if len(tables.cells):
        print(fewshot_markdown(tables, "accuracy"), end="")
    else:
        print("  no finished runs yet")
    sys.stdout.flush()
