"""End to end: `bash scripts/paper/fig4.sh` narrowed to one fixture dataset, one shot and one
seed trains and tests for real (tiny random-weight CLIP), a second call skips the finished
runs, and `parse_results.py --paper fig4` renders the figure from the saved TaskRes residual.
Then `table3.sh` in the same output makes the enhanced base, reuses the TaskRes run fig4 made,
and runs the base and TaskRes* rows on it."""
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from experiments.paper_render import render_item
from tests.dataset_fixtures import write_fixture
from tests.tiny_clip import save_tiny_clip

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fig4_command_runs_and_renders_on_fixture_data(tmp_path):
    write_fixture(tmp_path / "data", "DescribableTextures")
    clip_path = save_tiny_clip(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE", "CFG", "LAUNCHER")}
    env.update(DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"), PYTHON=sys.executable,
               DATASETS="dtd", SHOTS="1", SEEDS="1", OMP_NUM_THREADS="1")
    tiny = ["OPTIM.MAX_EPOCH", "2", "MODEL.BACKBONE.PATH", clip_path, "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0"]

    def call(argv):
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{argv}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    first = call(["bash", "scripts/paper/fig4.sh", *tiny])
    assert first.count("[run] ") == 2  # zero-shot CLIP and TaskRes
    assert "Render: python parse_results.py" in first and "--paper fig4 --datasets dtd" in first
    again = call(["bash", "scripts/paper/fig4.sh", *tiny])
    assert "[run] " not in again and again.count("[skip] ") == 2

    rendered = call([sys.executable, "parse_results.py", str(tmp_path / "out"), "--paper", "fig4",
                     "--datasets", "dtd", "--shots", "1", "--seeds", "1"])
    assert "| DTD " in rendered
    table = pd.read_csv(tmp_path / "out" / "paper" / "fig4.csv", index_col=0)
    checkpoint = (tmp_path / "out" / "dtd" / "TaskRes" / "adam_lr2e-3_B256_ep100_1shots" /
                  "seed1" / "prompt_learner" / "model.pth.tar-2")
    residual = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"][
        "text_feature_residuals"]
    assert residual.abs().sum() > 0  # TaskRes learned something in two epochs
    assert table.loc["DTD", "Residual magnitude"] == float(residual.float().abs().mean())
    assert table.loc["DTD", "Classes K"] == 4
    zero_shot = table.loc["DTD", "Zero-shot accuracy (%)"]
    assert table.loc["DTD", "Relative transfer difficulty"] == 1 / (4 * zero_shot / 100)
    assert (tmp_path / "out" / "paper" / "fig4.png").read_bytes()[:4] == b"\x89PNG"

    env.update(STRONG_BASE=str(tmp_path / "strong_base"), ENHANCED_BASE_EPOCHS="1")
    table3 = call(["bash", "scripts/paper/table3.sh", *tiny])
    base_file = tmp_path / "strong_base" / "DescribableTextures" / "rn50_1shots" / "model.pth.tar"
    assert f"[enhanced base] {base_file}" in table3 and base_file.is_file()
    assert table3.count("[run] ") == 3 and table3.count("[skip] ") == 1  # TaskRes: fig4's run
    text, _ = render_item(str(tmp_path / "out"), "table3", datasets=["dtd"], shots=[1], seeds=[1])
    assert "| Enhanced base + TaskRes |" in text and "–" not in text
    star = tmp_path / "out" / "dtd" / "TaskRes" / "adam_lr2e-3_B256_ep100_1shots" / "enhanced_base"
    assert json.loads((star / "seed1" / "result.json").read_text())["enhanced_base"] == \
        str(base_file)


def test_paper_command_refuses_a_launcher_it_cannot_use(monkeypatch):
    from dassl.utils.errors import UserError
    from experiments.paper_run import run_all
    monkeypatch.setenv("LAUNCHER", "slurm")
    with pytest.raises(UserError, match="LAUNCHER=slurm: a paper command runs its grid here"):
        run_all([])


def test_paper_command_names_a_bad_setting(tmp_path, monkeypatch, capsys):
    from dassl.utils.errors import run_cli
    from experiments.script import main
    monkeypatch.setenv("DATA", str(tmp_path))
    monkeypatch.setenv("SHOTS", "x")
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, ["paper", "table2"])
    assert exit_.value.code == 2
    assert "SHOTS='x': give whole numbers separated by spaces" in capsys.readouterr().err
