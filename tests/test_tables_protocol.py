"""parse_results.py tables and protocols, cost columns, subset hashes and published numbers, on
fixture output trees (real result.json files, real subprocesses)."""
import os

from dassl.utils import write_json
from experiments.published import PUBLISHED
from tests.test_parse_results import run_parse, training_log, write

SEEDS = (1, 2, 3)


def tip_run(root, dataset, shots, seed, acc, protocol="fsval", subset=None, variant="", cost=None):
    path = os.path.join(root, dataset, "TipAdapter", f"rn50_{shots}shots", *filter(None, [variant]), f"seed{seed}")
    write(path, training_log(acc))
    write_json({"accuracy": acc, "trainer": "TipAdapter", "dataset": dataset, "num_shots": shots, "seed": seed,
                "backbone": "RN50", "protocol": protocol, "subset_hash": subset or f"{dataset}-{shots}-{seed}",
                "trainable_params": 0, "cost": cost or {"wall_s": 2.0 * seed, "host_peak_mb": 100.0 + seed,
                                                        "device_peak_mb": None, "device": "testcpu"},
                "request": {"method": "tip_adapter", "cfg": "rn50", "variant": variant}},
               os.path.join(path, "result.json"))
    return path


def test_protocols_get_their_own_rows_and_oracle_is_flagged(tmp_path):
    for seed in SEEDS:
        tip_run(tmp_path, "dtd", 16, seed, 60.0 + seed)
        tip_run(tmp_path, "dtd", 16, seed, 70.0 + seed, protocol="oracle", variant="oracle")
        tip_run(tmp_path, "dtd", 16, seed, 65.0 + seed, protocol="fullval", variant="fullval")
    out = run_parse(tmp_path, "--table", "--datasets", "dtd").stdout
    assert "## Tip-Adapter: accuracy" in out
    assert "## Tip-Adapter [fullval]: accuracy" in out
    assert "## Tip-Adapter [oracle] [ORACLE: selected on test]: accuracy" in out
    assert "62.00" in out and "67.00" in out and "72.00" in out  # three cells, never averaged together


def test_a_cell_refuses_runs_of_one_seed_on_different_subsets(tmp_path):
    # The output tree gives each folder its own cell; two runs meet in one cell only when their
    # labels coincide (e.g. a plugin method named like ours), so the check is fed such a frame.
    import pandas as pd
    from experiments.collect import ResultsError
    from experiments.tables import check_one_subset_per_cell
    runs = pd.DataFrame({"label": ["Tip-Adapter"] * 3, "dataset": ["dtd"] * 3, "shots": [16] * 3,
                         "seed": [1, 1, 2], "finished": [True] * 3, "path": ["a/seed1", "b/seed1", "a/seed2"],
                         "subset_hash": ["hash-one", "hash-two", "hash-three"]})
    check_one_subset_per_cell(runs.iloc[[0, 2]])  # one run per seed: fine
    try:
        check_one_subset_per_cell(runs)
    except ResultsError as error:
        assert "runs on different few-shot subsets" in str(error) and "a/seed1" in str(error) and "b/seed1" in str(error)
    else:
        raise AssertionError("two subsets of seed 1 were put in one cell")


def test_cost_columns(tmp_path):
    for seed in SEEDS:
        tip_run(tmp_path, "dtd", 16, seed, 60.0 + seed)
    out = run_parse(tmp_path, "--table", "--datasets", "dtd", "--cost").stdout
    assert "cost per run (devices: testcpu)" in out
    row = next(line for line in out.splitlines() if line.startswith("| DTD, 16 shots"))
    assert "| 4.0 " in row and "103.0" in row  # mean wall time 2/4/6 s, peak memory max 103 MB


def test_vs_published_puts_ours_beside_the_published_number(tmp_path):
    published = next(s for s in PUBLISHED if s.trainer == "ZeroshotCLIP" and s.dataset == "dtd")
    path = os.path.join(tmp_path, "dtd", "ZeroshotCLIP", "rn50_0shots")
    write(path, training_log(40.0))
    write_json({"accuracy": 40.0, "trainer": "ZeroshotCLIP", "dataset": "dtd", "num_shots": 0, "seed": None,
                "backbone": "RN50", "protocol": "nov", "request": {"method": "zeroshot", "cfg": "rn50"}},
               os.path.join(path, "result.json"))
    out = run_parse(tmp_path, "--table", "--datasets", "dtd", "--vs-published").stdout
    row = next(line for line in out.splitlines() if line.startswith("| Zero-shot CLIP") and "DTD" in line)
    assert f"{published.points[0]:.2f}" in row and f"{40.0 - published.points[0]:+.2f}" in row
    assert published.source in row
