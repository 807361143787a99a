"""The experiment grid: which runs exist (`plan`), where they write (`layout`), how their
results are read back and aggregated (`collect`, `tables`, `plots`). Repo-local, like datasets/."""
