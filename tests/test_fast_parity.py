"""benchmarks.fast_parity: where each V's runs go, and the verdict it prints from finished runs."""
import argparse
import json
import os

from benchmarks.fast_parity import main, plan


def _finish(cells, column, accuracies):
    """Write the result.json of seeds 1-3 of `column`, as a finished train.py run leaves it."""
    runs = sorted((cell[4] for cell in cells if cell[3] == column), key=lambda run: run.seed)
    assert [run.seed for run in runs] == [1, 2, 3]
    for run, value in zip(runs, accuracies):
        os.makedirs(run.output_dir, exist_ok=True)
        with open(os.path.join(run.output_dir, "result.json"), "w") as f:
            json.dump({"accuracy": value}, f)


def test_each_view_count_is_a_column_and_spread_zero_warns(tmp_path, capsys):
    out, data = str(tmp_path / "out"), str(tmp_path / "data")
    os.makedirs(data)  # the planner needs the data root to exist; the table reads only results
    cells = plan(argparse.Namespace(
        backbone_name="", backbone_path="", datasets=["demo_shapes"], methods=["taskres"], shots=[16],
        seeds=[1, 2, 3], pipelines=["reference", "fast-random-seeded"], views=[10, 20],
        reference_as="exact", output=out, data=data, overrides=[]))
    assert sorted({cell[3] for cell in cells}) == ["fast-random-seeded", "fast-random-seeded-v20", "reference"]
    # V=10 keeps the pipeline's folder (earlier runs resume); V=20 runs get their own and carry V
    for column, views in (("fast-random-seeded", "10"), ("fast-random-seeded-v20", "20")):
        for cell in cells:
            if cell[3] == column:
                run = cell[4]
                assert run.output_dir.startswith(os.path.join(out, column, "demo_shapes"))
                assert run.args[run.args.index("TRAIN.FEATURE_CACHE.VIEWS") + 1] == views

    table_only = ["--data", data, "--datasets", "demo_shapes", "--methods", "taskres", "--shots", "16",
                  "--output", out, "--pipelines", "fast-random-seeded", "--views", "10", "20",
                  "--table-only"]
    _finish(cells, "reference", [60.0, 60.0, 60.0])
    _finish(cells, "fast-random-seeded", [60.0, 60.0, 60.0])
    _finish(cells, "fast-random-seeded-v20", [61.0, 60.0, 60.0])
    main(table_only)
    printed = capsys.readouterr().out
    assert "fast-random-seeded: within the reference seed spread in 1/1 cells" in printed
    assert "fast-random-seeded-v20: within the reference seed spread in 0/1 cells" in printed
    assert "warning: demo_shapes taskres 16 shots: every reference seed gave the same accuracy" in printed

    # a reference spread above 0: no warning, and the verdict follows the spread
    _finish(cells, "reference", [59.0, 60.0, 61.0])
    main(table_only)
    printed = capsys.readouterr().out
    assert "warning" not in printed
    assert "fast-random-seeded-v20: within the reference seed spread in 1/1 cells" in printed
