"""The experiment layer, one package: plan the runs (`plan`, `layout`, `benchmarks`, paper items
as data in `paper`), execute them (`execute`, `job`, `script` behind scripts/*.sh, the launcher
`python -m experiments` in `cli`/`slurm`), collect their records (`collect`) and render tables
and plots (`tables`, `plots`, `paper_render`, `paper_plots`). Repo-local, like `datasets/`."""
