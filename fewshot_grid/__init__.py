"""The experiment grid of the few-shot benchmark: which runs exist (method x dataset x shots x
seed, planned from the method declarations), where their outputs live, and how their results
are read back and aggregated. Repo-local (not installed), like `datasets/` and `trainers/`.
"""
