"""The README stays true and short: its commands exist, and the example method of the
contributing page trains as written."""
import os
import re

from tests.clip_run_helpers import model_folders, result, run, trainer_args, write_fixture_and_clip
from tests.engine_helpers import REPO

README = open(os.path.join(REPO, "README.md")).read()
CONTRIBUTING = open(os.path.join(REPO, "docs", "contributing.md")).read()


def test_first_two_commands_are_demo_and_tests():
    commands = re.findall(r"^bash (\S+)", README, flags=re.M)
    assert commands[:2] == ["scripts/demo.sh", "scripts/test.sh"]
    for path in commands[:2]:
        assert os.path.isfile(os.path.join(REPO, path))
    assert "bash scripts/test.sh" in open(os.path.join(REPO, ".ci", "run")).read()


def test_readme_is_short_and_its_scripts_exist():
    assert len(README.splitlines()) <= 250
    for path in set(re.findall(r"`(?:[A-Z_]+=\S+ )*bash (scripts/\S+\.sh)", README)):
        assert os.path.isfile(os.path.join(REPO, path)), path
    for module in set(re.findall(r"`python -m ([\w.]+)", README)):
        assert os.path.exists(os.path.join(REPO, *module.split("."))) or \
            os.path.isfile(os.path.join(REPO, *module.split(".")) + ".py"), module


def test_example_method_trains_as_a_plugin(tmp_path):
    example = re.search(r"## Add a method in one file.*?```python\n(.*?)```", CONTRIBUTING, flags=re.S).group(1)
    plugin = tmp_path / "linear_head.py"
    plugin.write_text(example)
    data_root, clip_path = write_fixture_and_clip(tmp_path, "DescribableTextures", arch="vit")
    out = tmp_path / "out"
    run(trainer_args("LinearHead", "CoOp/rn50_ep50.yaml", data_root, clip_path, out, "DescribableTextures",
                     "OPTIM.MAX_EPOCH", "2", "DATASET.NUM_SHOTS", "2", flags=["--plugin", str(plugin)]))
    assert model_folders(out) == ["head"]
    assert 0.0 <= result(out)["accuracy"] <= 100.0
