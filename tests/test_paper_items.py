"""Each TaskRes paper item renders with exactly the paper's rows and columns from a tree of
result.json files (and, for Fig. 4, saved residual checkpoints); a missing run is reported
with the command that makes it (exit 2) unless --allow-partial."""
import json
import os

import pandas as pd
import pytest
import torch

import parse_results
from dassl.utils import save_checkpoint
from dassl.utils.errors import UserError
from experiments import paper
from experiments.paper_render import render_item
from trainers.common.experiment import load_methods

load_methods()

NAMES = ["ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "Flowers102", "Food101",
         "FGVCAircraft", "SUN397", "DTD", "EuroSAT", "UCF101"]
SHOT_COLUMNS = ["1-shot", "2-shot", "4-shot", "8-shot", "16-shot"]
BACKBONES = ["RN50", "RN101", "ViT-B/32", "ViT-B/16"]
DG_COLUMNS = ["ImageNet", "ImageNet-V2", "ImageNet-Sketch", "ImageNet-A", "ImageNet-R"]
FIG3_ROWS = ["Zero-shot CLIP", "CoOp", "CLIP-Adapter", "Tip-Adapter-F", "TaskRes", "TaskRes*"]
EXPECTED = {  # item: (rows, columns) as the paper lays them out
    "fig1": (["Zero-shot CLIP", "CoOp", "CLIP-Adapter", "Tip-Adapter-F", "TaskRes"],
             SHOT_COLUMNS + ["Tuned parameters"]),
    "fig3": ([(d, m) for d in NAMES + ["Average"] for m in FIG3_ROWS], SHOT_COLUMNS),
    "table1": ([(b, m) for b in BACKBONES for m in ["Zero-shot CLIP", "Linear-probe CLIP", "CoOp",
                                                    "TaskRes", "TaskRes*"]], DG_COLUMNS),
    "table2": (["t' = t", "t' = φ(t)", "t' = t + α·φ(t)", "t' = t + α·x"], SHOT_COLUMNS),
    "table3": (["Regular base", "Regular base + TaskRes", "Enhanced base",
                "Enhanced base + TaskRes"], SHOT_COLUMNS),
    "table4": (["TaskRes-I", "TaskRes-T", "TaskRes-I&T"], SHOT_COLUMNS),
    "table5": (["α = 0.1", "α = 0.3", "α = 0.5", "α = 0.7", "α = 0.9", "α = 1.0",
                "learnable α"], SHOT_COLUMNS),
    "table6": (["Zero-shot CLIP", "CoOp", "CLIP-Adapter", "TaskRes", "TaskRes*"], BACKBONES),
    "fig4": (NAMES, ["Classes K", "Zero-shot accuracy (%)", "Relative transfer difficulty",
                     "Residual magnitude"]),
}
CLASSES = 10
ZERO_SHOT_ACCURACY = 50.0


def residual_level(dataset):
    return 0.01 * (1 + sorted(paper.ITEMS["fig4"].datasets).index(dataset))


def write_fixture_tree(output, item):
    """A finished result.json in every folder the item reads: seed S scores 40 + S, a
    seedless run 50; TaskRes' 16-shot runs also save a residual checkpoint."""
    for cell in paper.cells(paper.ITEMS[item], str(output)):
        os.makedirs(cell.output_dir, exist_ok=True)
        value = ZERO_SHOT_ACCURACY if cell.seed is None else 40.0 + cell.seed
        record = dict(accuracy=value, num_classes=CLASSES,
                      trainable_params=0 if cell.run.eval_only else 1024 * cell.shots,
                      epochs=3)
        with open(os.path.join(cell.output_dir, "result.json"), "w") as f:
            json.dump(record, f)
        if item == "fig4" and cell.row.method == "taskres" and not cell.dg:
            residual = torch.full((CLASSES, 8), residual_level(cell.dataset))
            residual[0] *= -1  # the magnitude is of absolute values
            save_checkpoint({"state_dict": {"text_feature_residuals": residual}, "epoch": 3},
                            os.path.join(cell.output_dir, "prompt_learner"))


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    for item in EXPECTED:
        write_fixture_tree(root / item, item)
        render_item(str(root / item), item)  # every test reads the rendered CSVs, in any order
    return root


@pytest.mark.parametrize("item", list(EXPECTED))
def test_render_has_the_papers_rows_and_columns(trees, item):
    text, written = render_item(str(trees / item), item)
    table = pd.read_csv(trees / item / "paper" / f"{item}.csv")
    rows, columns = EXPECTED[item]
    keys = [c for c in table.columns if c not in columns]
    assert list(table.columns[len(keys):]) == columns
    found = list(table[keys[0]]) if len(keys) == 1 else list(zip(*[table[k] for k in keys]))
    assert found == rows
    assert text.startswith(f"## {paper.ITEMS[item].title}")
    assert ("png" in {p.rsplit(".", 1)[1] for p in written}) == paper.ITEMS[item].plot
    for path in written:
        if path.endswith(".png"):
            assert open(path, "rb").read(4) == b"\x89PNG"


def test_values_are_seed_means_and_zero_shot_repeats(trees):
    table = pd.read_csv(trees / "table2" / "paper" / "table2.csv", index_col=0)
    assert table.loc["t' = t + α·x"].tolist() == [42.0] * 5  # seeds 1-3 score 41, 42, 43
    assert table.loc["t' = t"].tolist() == [ZERO_SHOT_ACCURACY] * 5  # nothing trained: one run
    fig1 = pd.read_csv(trees / "fig1" / "paper" / "fig1.csv", index_col=0)
    assert fig1.loc["TaskRes", "Tuned parameters"] == f"{1024 * 16:,}"
    assert fig1.loc["Zero-shot CLIP", "Tuned parameters"] == "0"


def test_fig4_reads_the_residual_from_the_checkpoints(trees):
    table = pd.read_csv(trees / "fig4" / "paper" / "fig4.csv", index_col=0)
    for stem, name in zip(paper.ITEMS["fig4"].datasets, NAMES):
        assert table.loc[name, "Residual magnitude"] == pytest.approx(residual_level(stem))
        assert table.loc[name, "Relative transfer difficulty"] == pytest.approx(
            1 / (CLASSES * ZERO_SHOT_ACCURACY / 100))


def test_a_missing_run_is_named_with_the_command_that_makes_it(tmp_path, capsys):
    write_fixture_tree(tmp_path, "table4")
    gone = paper.cells(paper.ITEMS["table4"], str(tmp_path))[7].output_dir
    os.remove(os.path.join(gone, "result.json"))
    with pytest.raises(UserError) as error:
        render_item(str(tmp_path), "table4")
    message = str(error.value)
    assert gone in message and "1 of 45 runs are missing" in message
    assert f"OUTPUT={tmp_path} SHOTS=4 bash scripts/paper/table4.sh" in message
    with pytest.raises(SystemExit) as exit_:  # the command line: the message, exit 2
        parse_results.main([str(tmp_path), "--paper", "table4"])
    assert exit_.value.code == 2 and gone in capsys.readouterr().err
    text, _ = render_item(str(tmp_path), "table4", allow_partial=True)
    assert "> Partial: table4: 1 of 45 runs are missing" in text


def test_unknown_item_and_narrowing(tmp_path):
    with pytest.raises(UserError, match="unknown paper item 'table9': choose one of fig1"):
        render_item(str(tmp_path), "table9")
    item = paper.narrowed(paper.ITEMS["table1"], datasets=["demo_shapes"], shots=[1],
                          backbones=["RN50"], targets=["demo_shapes"])
    found = paper.cells(item, str(tmp_path), seeds=(1,))
    assert {c.dataset for c in found} == {"demo_shapes"} and {c.shots for c in found} == {1}
    with pytest.raises(UserError, match="BACKBONES: RN18 unknown"):
        paper.narrowed(item, backbones=["RN18"])


def test_an_average_with_a_dataset_missing_stays_empty(tmp_path):
    write_fixture_tree(tmp_path, "table3")
    gone = [c for c in paper.cells(paper.ITEMS["table3"], str(tmp_path))
            if c.dataset == "dtd" and c.shots == 2 and c.row.label == "Regular base + TaskRes"]
    for cell in gone:  # all three seeds: DTD has no 2-shot TaskRes result
        os.remove(os.path.join(cell.output_dir, "result.json"))
    render_item(str(tmp_path), "table3", allow_partial=True)
    table = pd.read_csv(tmp_path / "paper" / "table3.csv", index_col=0)
    assert pd.isna(table.loc["Regular base + TaskRes", "2-shot"])
    assert table.loc["Regular base + TaskRes", "1-shot"] == 42.0
