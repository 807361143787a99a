"""The demo (`bash scripts/demo.sh --quick`) runs to its table as a real subprocess."""
import glob
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from datasets.demo_shapes_generate import generate
from tests.engine_helpers import REPO
from tests.machine_speed import scaled_timeout

QUICK_RUNS = 7  # zero-shot + 3 methods x 2 shot counts x 1 seed
BASE2NEW_LABELS = ("Zero-shot CLIP", "CoCoOp", "KgCoOp", "MaPLe", "PromptSRC")  # each: base, then new
TRAINERS = ("ZeroshotCLIP", "TaskRes", "CLIP_Adapter", "CoOp")
LABELS = ("Zero-shot CLIP", "TaskRes", "CLIP-Adapter", "CoOp")  # as the methods declare them


def _load_demo():
    spec = importlib.util.spec_from_file_location("demo_driver", os.path.join(REPO, "scripts", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _record(path):
    with open(path) as f:
        return json.load(f)


def _run_demo(output, env):
    return subprocess.run(["bash", "scripts/demo.sh", "--quick", "--jobs", "2", "--output", str(output)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=scaled_timeout(600))


@pytest.fixture
def demo_env(tmp_path):
    env = dict(os.environ, CLIP_CACHE_DIR=str(tmp_path / "clip_cache"), CLIP_OFFLINE="1")
    env.pop("FEWSHOT_FEATURE_CACHE", None)  # the demo then keeps its features in its own folder
    return env


@pytest.mark.slow
def test_quick_demo_runs_to_its_table_and_reuses_finished_runs(tmp_path, demo_env):
    out = tmp_path / "demo"
    proc = _run_demo(out, demo_env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stdout = proc.stdout
    assert "[setup] installing" not in stdout  # the existing venv is used as it is

    # The random-weights banner comes before the runs and again after the table.
    assert stdout.count("RANDOM WEIGHTS: --quick uses a tiny CLIP") == 2
    # One line per finished run with a running count (runs go 2 at a time: any order).
    progress = re.findall(r"^\[(\d+)/(\d+)\] (.+?): (\d+\.\d)% \(\d+ s\)$", stdout, re.M)
    progress, base2new = progress[:QUICK_RUNS], progress[QUICK_RUNS:]
    assert [(int(i), int(n)) for i, n, _, _ in progress] == [(i, QUICK_RUNS) for i in range(1, QUICK_RUNS + 1)]
    # Base-to-new: every method on the base classes first, then on the new ones (the trained
    # models loaded), with the shots of the quick size.
    n = len(BASE2NEW_LABELS)
    assert [(int(i), int(m)) for i, m, _, _ in base2new] == [(i, n) for i in range(1, n + 1)] * 2
    for half, lines in (("base", base2new[:n]), ("new", base2new[n:])):
        assert sorted(p[2] for p in lines) == sorted(
            [f"Zero-shot CLIP, {half} classes"] + [f"{m} 2 shots seed 1, {half} classes" for m in BASE2NEW_LABELS[1:]])
    assert sorted(p[2] for p in progress) == sorted(
        ["Zero-shot CLIP"] + [f"{m} {k} seed 1" for m in ("TaskRes", "CLIP-Adapter", "CoOp")
                              for k in ("1 shot", "2 shots")])
    assert re.search(r"^7 runs .*, 2 at a time with \d+ CPU thread\(s\) each", stdout, re.M)

    root = out / "quick-random"
    # Layout: the benchmark as a real dataset folder, one run folder per planned run.
    data = root / "data" / "demo_shapes"
    assert (data / "split_zhou_DemoShapes.json").is_file()
    assert len(os.listdir(data / "images")) == 6
    assert os.listdir(root / "feature_cache")
    results = sorted(glob.glob(str(root / "runs" / "demo_shapes" / "*" / "**" / "result.json"), recursive=True))
    assert len(results) == QUICK_RUNS
    assert {_record(r)["trainer"] for r in results} == set(TRAINERS)
    for r in results:
        assert os.path.isfile(os.path.join(os.path.dirname(r), "log.txt"))
    # Each progress line shows the accuracy its run recorded.
    recorded = sorted(round(_record(r)["accuracy"], 1) for r in results)
    assert recorded == sorted(float(p[3]) for p in progress)

    # The table: one section per method, a demo_shapes row, and it says the weights were random.
    # The demo's trained runs use the fast pipeline, so their labels say so.
    table = stdout[stdout.index("Weights: RANDOM"):stdout.index("# Base-to-new")]
    for label in LABELS:
        shown = label if label == "Zero-shot CLIP" else f"{label} [fast]"
        assert re.search(rf"^## {re.escape(shown)}: ", table, re.M), label
    assert len(re.findall(r"^\| demo_shapes ", table, re.M)) == 4
    markdown = (root / "results.md").read_text()
    assert "Weights: RANDOM" in markdown and "## CoOp [fast]: " in markdown
    # The base-to-new table: Base, New and HM per method, from the runs' own result.json files.
    assert "# Base-to-new (2 shots per base class, seed 1)" in markdown
    for label in BASE2NEW_LABELS[1:]:  # their labels are their trainers' names (the run folders)
        section = markdown[markdown.index(f"## {label}, 2 shots: base-to-new accuracy"):]
        row = re.search(r"^\| demo_shapes +\| ([\d.]+) \(1\) +\| ([\d.]+) \(1\) +\| ([\d.]+) ", section, re.M)
        base, new = (_record(glob.glob(str(root / "base2new" / half / "demo_shapes" / label / "*" / "seed1" /
                                           "result.json"))[0])["accuracy"] for half in ("train_base", "test_new"))
        assert (round(base, 2), round(new, 2)) == (float(row[1]), float(row[2]))
    assert f"Table: {root / 'results.md'}" in stdout and f"Plot: {root / 'fewshot.png'}" in stdout
    with open(root / "fewshot.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # Running again keeps every finished run (nothing retrained, nothing overwritten).
    mtimes = {r: os.path.getmtime(r) for r in results}
    again = _run_demo(out, demo_env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("(finished earlier; kept)") == QUICK_RUNS + 2 * len(BASE2NEW_LABELS)
    assert {r: os.path.getmtime(r) for r in results} == mtimes
    assert "reusing" in again.stdout


def test_weights_fall_back_to_the_tiny_clip_pretrained_here_with_the_reason(tmp_path, monkeypatch):
    demo = _load_demo()
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "empty_cache"))
    monkeypatch.setenv("CLIP_OFFLINE", "1")
    weights = demo.choose_weights(demo.FULL, False, str(tmp_path))  # builds the tiny CLIP if this machine has none
    assert weights.pretrained and weights.folder_tag == "tiny-pretrained"
    assert weights.overrides == ("MODEL.BACKBONE.NAME", "tiny-pretrained", "INPUT.SIZE", "(32, 32)")
    assert re.match(r"a tiny CLIP trained here in \d+ s on procedural captions of drawn shapes, not OpenAI's",
                    weights.note)
    assert "CLIP_OFFLINE is set" in weights.note and str(tmp_path / "empty_cache") in weights.note
    assert weights.image_size == 32

    forced = demo.choose_weights(demo.FULL, True, str(tmp_path))
    assert not forced.pretrained and forced.note == "--random-weights was given"
    assert forced.overrides == ("MODEL.BACKBONE.PRETRAINED", "False") and forced.folder_tag == "random"
    assert "RANDOM WEIGHTS" in demo.random_banner(forced)


def test_quick_weights_are_a_loadable_tiny_clip(tmp_path):
    from dassl.config import get_cfg_default
    from trainers.common.clip_loader import load_clip_to_cpu
    from trainers.config import extend_cfg

    demo = _load_demo()
    weights = demo.choose_weights(demo.QUICK, False, str(tmp_path))
    cfg = extend_cfg(get_cfg_default())
    cfg.merge_from_list(list(weights.overrides))
    model = load_clip_to_cpu(cfg)
    assert model.visual.input_resolution == 32 == cfg.INPUT.SIZE[0]
    first = Path(cfg.MODEL.BACKBONE.PATH).read_bytes()
    demo.choose_weights(demo.QUICK, False, str(tmp_path))  # reused, not redrawn
    assert Path(cfg.MODEL.BACKBONE.PATH).read_bytes() == first


def test_a_data_folder_drawn_otherwise_stops_the_demo_with_the_fix(tmp_path, capsys):
    demo = _load_demo()
    conflicting = tmp_path / "quick-random" / "data"
    generate(conflicting, size=16, train=1, val=1, test=1)
    assert demo.main(["--quick", "--output", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "demo error:" in err and str(conflicting / "demo_shapes") in err and "Delete that folder" in err
    assert not (tmp_path / "quick-random" / "runs").exists()
