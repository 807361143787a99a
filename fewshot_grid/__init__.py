"""The experiment grid of the few-shot benchmark: which runs exist (method x dataset x shots x
seed), where their outputs live, and how their results are read back and aggregated.

Repo-local (not installed), like `datasets/` and `trainers/`. Used by `parse_results.py`, by the
shell scripts under `scripts/` (through `python -m fewshot_grid.plan`) and by sweep launchers, so
that planning runs and reading them back share one definition of the output layout.
"""
