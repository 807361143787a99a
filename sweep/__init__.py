"""Running experiments: the run executor (`execute`), the scripts' entry point (`script`) and the
sweep launcher `python -m sweep` (`cli`; local or SLURM). Repo-local, like `datasets/`."""
