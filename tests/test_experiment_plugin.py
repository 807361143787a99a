"""A method declared in one plugin file (tests/plugins/linear_head_method.py, listed in
PLUGINS) runs through scripts/main.sh, the local launcher, parse_results.py --table and the
demo's table and plot, with no other file touched; result.json records what ran; a finished
run is reused only with the settings it recorded (otherwise exit 2 and what differs)."""
import json
import os
import subprocess
import sys

import pytest

from experiments.tables import fewshot_tables
from experiments.plots import chance_level, weights_used
from tests.dataset_fixtures import write_fixture
from tests.tiny_clip import TINY_CONFIGS, save_tiny_clip
from trainers.common.experiment import load_methods

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(REPO, "tests", "plugins", "linear_head_method.py")
LABEL = "Linear head (plugin)"


def tiny(clip_path, epochs=1):
    return ["OPTIM.MAX_EPOCH", str(epochs), "MODEL.BACKBONE.PATH", str(clip_path),
            "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0"]


def start(argv, env):
    return subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, check=True):
    """Wait for a started command; its CompletedProcess (stdout, stderr, returncode)."""
    stdout, stderr = proc.communicate(timeout=600)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"{proc.args} failed ({proc.returncode}):\n{stdout[-3000:]}\n"
                             f"{stderr[-3000:]}")
    return done


def call(argv, env, check=True):
    return finish(start(argv, env), check)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One output tree for every test: the plugin method run by main.sh (1 shot) and by the
    launcher (2 shots), and the demo of the plugin method, all started at once (single-thread
    processes: the cores run them side by side)."""
    base = tmp_path_factory.mktemp("plugin")
    write_fixture(base / "data", "DescribableTextures")
    env = {k: v for k, v in os.environ.items()
           if k not in ("SEEDS", "FORCE", "CFG", "TRAINER", "LAUNCHER", "SWEEP_OPTS")}
    env.update(PLUGINS=PLUGIN, DATA=str(base / "data"), OUTPUT=str(base / "output"),
               PYTHON=sys.executable, SEEDS="1", OMP_NUM_THREADS="1")
    clip_path = save_tiny_clip(base)
    demo = start([sys.executable, "scripts/demo.py", "--quick", "--methods", "linear_head",
                  "--jobs", "1", "--output", str(base / "demo")],
                 dict(env, CLIP_CACHE_DIR=str(base / "clip"), CLIP_OFFLINE="1"))
    main = start(["bash", "scripts/main.sh", "linear_head", "dtd", "1", *tiny(clip_path)], env)
    sweep = start([sys.executable, "-m", "experiments", "--methods", "linear_head", "--datasets",
                   "dtd", "--shots", "2", "--seeds", "1", "--gpus", "none", "--output",
                   str(base / "output"), "--data", str(base / "data"), "--", *tiny(clip_path)],
                  env)
    try:
        yield dict(base=base, env=env, clip=clip_path, main=finish(main), sweep=finish(sweep),
                   demo=demo,
                   runs={k: base / "output" / "dtd" / "LinearHeadProbe" / f"defaults_{k}shots" /
                         "seed1" for k in (1, 2)})
    finally:
        for proc in (demo, main, sweep):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_main_sh_and_the_launcher_run_the_plugin_method(world):
    for shots, run in world["runs"].items():
        with open(run / "result.json") as f:
            record = json.load(f)
        assert (record["method"], record["cfg"], record["variant"]) == ("linear_head",
                                                                        "defaults", "")
        assert record["request"]["shots"] == shots and record["request"]["seed"] == 1
        assert record["num_classes"] == 4 and record["weights"] == str(world["clip"])
        embed_dim = TINY_CONFIGS["rn"]["embed_dim"]
        assert record["trainable_params"] == record["num_classes"] * embed_dim  # the head only
        assert record["head_init"] == "text features"  # the trainer's own run_record
        assert "pipeline" in record
    assert (world["runs"][2] / "sweep.log").is_file()  # the launcher's run
    assert "[sweep] finished: 1 done, 0 failed" in world["sweep"].stdout
    assert f"## {LABEL}: " in world["sweep"].stdout  # its closing table


def test_table_and_plot_use_the_declared_label_and_recorded_facts(world):
    out = world["base"] / "output"
    png = world["base"] / "plot.png"
    table = call([sys.executable, "parse_results.py", str(out), "--table", "--datasets", "dtd",
                  "--seeds", "1", "--plot", str(png)], world["env"])
    assert f"## {LABEL}: accuracy (%)" in table.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"
    load_methods([PLUGIN])
    tables = fewshot_tables(str(out), ["dtd"], (1,))
    assert tables.labels == [LABEL]
    assert chance_level(tables.runs, "dtd") == 25.0  # 4 classes, from result.json
    assert weights_used(tables.runs) == os.path.basename(world["clip"])
    # only the shots that ran: no empty column
    assert list(tables.cells.index.get_level_values("shots")) == [1, 2]


def test_the_demo_runs_and_plots_the_plugin_method(world):
    proc = finish(world["demo"])
    folder = world["base"] / "demo" / "quick-random"
    assert f"{LABEL} 1 shot seed 1:" in proc.stdout
    assert f"## {LABEL} [fast]: " in (folder / "results.md").read_text()  # the demo runs fast
    assert (folder / "fewshot.png").read_bytes()[:4] == b"\x89PNG"


def test_a_finished_run_is_reused_only_with_its_recorded_settings(world):
    run = world["runs"][1]
    result = (run / "result.json").read_text()
    # The three commands only read the tree, so they run side by side.
    same = start(["bash", "scripts/main.sh", "linear_head", "dtd", "1", *tiny(world["clip"])],
                 world["env"])
    other = start(["bash", "scripts/main.sh", "linear_head", "dtd", "1",
                   *tiny(world["clip"], epochs=2)], world["env"])
    sweep = start([sys.executable, "-m", "experiments", "--methods", "linear_head", "--datasets",
                   "dtd", "--shots", "1", "--seeds", "1", "--gpus", "none", "--output",
                   str(world["base"] / "output"), "--", *tiny(world["clip"], epochs=2)],
                  world["env"])
    same, other, sweep = finish(same), finish(other, check=False), finish(sweep, check=False)
    assert f"[skip] {run}: finished" in same.stdout
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert f"{run} finished with other settings (args: recorded" in other.stderr
    assert "FORCE=1" in other.stderr and "OUTPUT" in other.stderr
    assert sweep.returncode == 2 and "finished with other settings" in sweep.stderr
    assert (run / "result.json").read_text() == result  # nothing was rerun
