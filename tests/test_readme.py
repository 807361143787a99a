"""The README stays true: its commands exist and its example method trains as written."""
import os
import re

from tests.clip_run_helpers import model_folders, result, run, trainer_args, write_fixture_and_clip
from tests.engine_helpers import REPO

README = open(os.path.join(REPO, "README.md")).read()


def test_first_two_commands_are_demo_and_tests():
    commands = re.findall(r"^bash (\S+)", README, flags=re.M)
    assert commands[:2] == ["scripts/demo.sh", "scripts/test.sh"]
    for path in commands[:2]:
        assert os.path.isfile(os.path.join(REPO, path))
    assert "bash scripts/test.sh" in open(os.path.join(REPO, ".ci", "run")).read()


def test_example_method_trains_as_a_plugin(tmp_path):
    example = re.search(r"\*\*A method\*\*.*?```python\n(.*?)```", README, flags=re.S).group(1)
    plugin = tmp_path / "linear_head.py"
    plugin.write_text(example)
    data_root, clip_path = write_fixture_and_clip(tmp_path, "DescribableTextures", arch="vit")
    out = tmp_path / "out"
    run(trainer_args("LinearHead", "CoOp/rn50_ep50.yaml", data_root, clip_path, out, "DescribableTextures",
                     "OPTIM.MAX_EPOCH", "2", "DATASET.NUM_SHOTS", "2", flags=["--plugin", str(plugin)]))
    assert model_folders(out) == ["head"]
    assert 0.0 <= result(out)["accuracy"] <= 100.0
