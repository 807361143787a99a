"""Running experiments: the run executor behind the scripts, the demo and the local launcher
(`execute`, `script`), and the sweep launcher `python -m sweep` (`cli`), which runs a grid of
few-shot runs in parallel on this machine (`--launcher local`) or on SLURM (`slurm`, through
submitit) into the same folders as `scripts/<method>/main.sh`. Repo-local, like `datasets/`.
"""
