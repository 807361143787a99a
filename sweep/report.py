"""What a sweep prints at the end (or with `--status`): the `parse_results.py --table` of the
runs that finished and the failed runs with the path of their log."""
import sys
from collections import Counter

import parse_results

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
    incomplete grid is marked by parse_results, not averaged)."""
    datasets = list(dict.fromkeys(r.dataset for r in runs))  # in the sweep's order
    shots = sorted({r.shots for r in runs})
    seeds = sorted({r.seed for r in runs if r.seed is not None})
    argv = [output, "--table", "--datasets", *datasets]
    if not (0 in shots and len(shots) > 1):  # zero-shot beside trained methods: each its own
        argv += ["--shots", *map(str, shots)]
    if seeds:
        argv += ["--seeds", *map(str, seeds)]
    print(f"\n$ python parse_results.py {' '.join(argv)}")
    sys.stdout.flush()
    return parse_results.main(argv)
