"""benchmarks.fast_parity: where each V's runs go, and the verdict it prints from finished runs."""
import argparse
import json
import os

from benchmarks.fast_parity import main, plan


def _plan(tmp_path, redraws=1, methods=("taskres",)):
    os.makedirs(tmp_path / "data", exist_ok=True)  # the planner needs the data root; the table reads results
    return plan(argparse.Namespace(
        backbone_name="", backbone_path="", datasets=["demo_shapes"], methods=list(methods), shots=[16],
        seeds=[1, 2, 3], pipelines=["reference", "fast-random-seeded"], views=[10, 20], redraws=redraws,
        reference_as="exact", output=str(tmp_path / "out"), data=str(tmp_path / "data"), overrides=[]))


def _finish(cells, column, accuracies, draw=0):
    """Write the result.json of the TaskRes seeds of `column`'s `draw`, as a finished train.py run leaves it."""
    runs = sorted((cell[4] for cell in cells if cell[1] == "taskres" and cell[3] == column and cell[5] == draw),
                  key=lambda run: run.seed)
    assert [run.seed for run in runs] == [1 + 10 * draw, 2 + 10 * draw, 3 + 10 * draw]
    for run, value in zip(runs, accuracies):
        os.makedirs(run.output_dir, exist_ok=True)
        with open(os.path.join(run.output_dir, "result.json"), "w") as f:
            json.dump({"accuracy": value}, f)


def test_each_view_count_is_a_column_and_spread_zero_warns(tmp_path, capsys):
    out, data = str(tmp_path / "out"), str(tmp_path / "data")
    cells = _plan(tmp_path)
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
    assert "warning: demo_shapes taskres 16 shots: every reference run gave the same accuracy" in printed

    # a reference spread above 0: no warning, and the verdict follows the spread
    _finish(cells, "reference", [59.0, 60.0, 61.0])
    main(table_only)
    printed = capsys.readouterr().out
    assert "warning" not in printed
    assert "fast-random-seeded-v20: within the reference seed spread in 1/1 cells" in printed


def test_redraws_rerun_each_subset_and_check_the_reference_against_itself(tmp_path, capsys):
    cells = _plan(tmp_path, redraws=2, methods=("zeroshot", "taskres"))
    zeroshot = [cell for cell in cells if cell[1] == "zeroshot"]
    assert len(zeroshot) == 3  # seedless: one run per column, nothing to redraw
    redrawn = [cell[4] for cell in cells if cell[5] == 1]
    assert sorted({run.seed for run in redrawn}) == [11, 12, 13]
    for run in redrawn:  # seed 1x trains on seed x's few-shot subset
        assert run.args[run.args.index("DATASET.FEWSHOT_SEED") + 1] == str(run.seed - 10)
    assert all("DATASET.FEWSHOT_SEED" not in cell[4].args for cell in cells if cell[5] == 0)

    _finish(cells, "reference", [60.0, 61.0, 62.0])
    _finish(cells, "reference", [63.0, 64.0, 65.0], draw=1)
    _finish(cells, "fast-random-seeded", [61.0, 61.0, 61.0])
    _finish(cells, "fast-random-seeded", [64.0, 64.0, 64.0], draw=1)
    main(["--data", str(tmp_path / "data"), "--datasets", "demo_shapes", "--methods", "zeroshot", "taskres",
          "--shots", "16", "--output", str(tmp_path / "out"), "--pipelines", "fast-random-seeded",
          "--redraws", "2", "--table-only"])
    printed = capsys.readouterr().out
    # pooled: 62.5 +- 1.71 over 6 reference runs, fast 62.5
    assert "62.50 +- 1.71 (6)" in printed
    assert "fast-random-seeded: within the reference seed spread in 1/1 cells" in printed
    assert "fast-random-seeded, one draw at a time (its draw r against the reference's draw r): 2/2 cells" in printed
    # the reference's two draws differ by 3 points, three times their spread
    assert "reference against itself (its draw r against its draw s, r != s): 0/2 cells" in printed
