"""Running experiments: the run executor behind the scripts, the demo and the local launcher
(`execute`, `script`), and the sweep launcher that runs a grid of few-shot runs (methods x
datasets x shots x seeds) in parallel, on one machine (`--launcher local`: one job per GPU or N
CPU workers) or on a SLURM cluster (`--launcher slurm`, through submitit).

    python -m sweep --methods taskres --datasets dtd eurosat --shots 1 16 --data $DATA

The runs are those `scripts/<method>/main.sh` makes (both expand them with
`fewshot_grid.plan`), into the same output folders, with the same done marker (`result.json`):
a second invocation submits only what is missing. Repo-local (not installed), like `datasets/`.
"""


class LauncherError(Exception):
    """What a launcher cannot do here (a bad GPU list, no SLURM, a refused submission): the
    message says what to change; the command line prints it without a traceback."""
