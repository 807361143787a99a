"""`python -m datasets.check` on a complete fixture tree and on broken ones."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from dassl.config.merge import ConfigError
from datasets import check
from tests.dataset_fixtures import DATASET_NAMES, fixture_counts, write_fixture
from tests.machine_speed import scaled_timeout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_ONLY = {"ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"}


def sizes_line(name):
    """How the check prints a fixture's sizes: '-' where a split does not exist."""
    c = fixture_counts(name)
    train = "-" if name in TEST_ONLY else f"{c['train']:,}"
    val = "-" if name in TEST_ONLY or name == "ImageNet" else f"{c['val']:,}"
    return f"train {train}  val {val}  test {c['test']:,}"


def tree_snapshot(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def block(out, name):
    """The lines printed for one dataset."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith(f"] {name}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    return "\n".join(lines[start:end])


def test_complete_tree_passes_with_size_notes(tmp_path):
    for name in DATASET_NAMES:
        write_fixture(tmp_path, name)
    before = tree_snapshot(tmp_path)
    p = subprocess.run([sys.executable, "-m", "datasets.check", "--root", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=scaled_timeout(300))
    assert p.returncode == 0, p.stdout + p.stderr
    for name in DATASET_NAMES:
        text = block(p.stdout, name)
        assert text.startswith(f"[{check.NOTE}] {name}"), text
        assert sizes_line(name) in text, text
        assert "sizes differ from the published split" in text
    # DemoShapes, DemoLandUse and ImageFolder are covered too: absent here (not drawn, not configured)
    assert "15 usable (15 with notes), 0 unusable, 3 not present" in p.stdout
    assert f"[{check.ABSENT}] DemoShapes" in p.stdout and "DATASET.IMAGE_FOLDER.DIR" in block(p.stdout, "ImageFolder")
    assert tree_snapshot(tmp_path) == before  # the check writes nothing


def test_broken_tree_names_what_is_wrong_and_fails(tmp_path, capsys):
    for name in ("Caltech101", "OxfordPets", "EuroSAT", "ImageNetV2", "FGVCAircraft"):
        write_fixture(tmp_path, name)
    gone = os.path.join(tmp_path, "caltech-101", "101_ObjectCategories", "Faces", "image_0002.jpg")
    os.remove(gone)
    os.remove(os.path.join(tmp_path, "oxford_pets", "split_zhou_OxfordPets.json"))
    os.remove(os.path.join(tmp_path, "imagenetv2", "classnames.txt"))
    before = tree_snapshot(tmp_path)

    code = check.main(["--root", str(tmp_path), "--dataset", "Caltech101", "OxfordPets", "EuroSAT",
                       "ImageNetV2", "FGVCAircraft", "SUN397"])
    out = capsys.readouterr().out
    assert code == 1
    assert block(out, "EuroSAT").startswith(f"[{check.NOTE}]")
    assert block(out, "FGVCAircraft").startswith(f"[{check.NOTE}]")
    caltech = block(out, "Caltech101")
    assert caltech.startswith(f"[{check.FAIL}]") and "1 of 30 images" in caltech and gone in caltech
    assert "split_zhou_Caltech101.json" in caltech and "Re-extract" in caltech
    pets = block(out, "OxfordPets")
    assert pets.startswith(f"[{check.FAIL}]") and "split_zhou_OxfordPets.json is missing" in pets
    assert "not comparable" in pets
    v2 = block(out, "ImageNetV2")
    assert v2.startswith(f"[{check.FAIL}]") and "classnames.txt" in v2
    sun = block(out, "SUN397")
    assert sun.startswith(f"[{check.ABSENT}]") and os.path.join(str(tmp_path), "sun397") in sun
    assert "2 usable (2 with notes), 3 unusable, 1 not present" in out
    assert tree_snapshot(tmp_path) == before  # no split built, no cache written


def test_absent_datasets_fail_only_when_asked_for(tmp_path, capsys):
    write_fixture(tmp_path, "DescribableTextures")
    assert check.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"[{check.ABSENT}] Food101" in out and "no folder 'food-101'" in out
    assert check.main(["--root", str(tmp_path), "--dataset", "Food101"]) == 1
    assert "Download and extract it" in capsys.readouterr().out


def test_empty_or_missing_root_fails(tmp_path, capsys):
    assert check.main(["--root", str(tmp_path)]) == 1
    assert "0 usable" in capsys.readouterr().out
    p = subprocess.run([sys.executable, "-m", "datasets.check", "--root", str(tmp_path / "nope")], cwd=REPO,
                       capture_output=True, text=True, timeout=scaled_timeout(120))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == (f"error: --root {tmp_path / 'nope'} does not exist or is not a folder: pass the "
                                "folder that holds the dataset folders (see DATASETS.md).")


def _check(capsys, root, *args):
    """`python -m datasets.check --root ROOT ARGS` (its main, in process): (exit code, stdout, stderr)."""
    code = check.main(["--root", str(root), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_truncated_image_and_bad_label_are_unusable(tmp_path, capsys):
    """Files that exist but do not decode, and a label outside the classes, fail the check
    (both passed it before), each named with its file or split-file entry."""
    write_fixture(tmp_path, "DescribableTextures")
    write_fixture(tmp_path, "EuroSAT")
    image = os.path.join(tmp_path, "dtd", "images", "banded", "banded_0002.jpg")
    data = open(image, "rb").read()
    open(image, "wb").write(data[:len(data) // 2])
    split_path = os.path.join(tmp_path, "eurosat", "split_zhou_EuroSAT.json")
    split = json.load(open(split_path))
    split["test"][2][1] = 99
    json.dump(split, open(split_path, "w"))
    before = tree_snapshot(tmp_path)

    code, out, err = _check(capsys, tmp_path, "--dataset", "DescribableTextures", "EuroSAT")
    assert code == 1
    dtd = block(out, "DescribableTextures")
    assert dtd.startswith(f"[{check.FAIL}]") and "1 of " in dtd and "images do not decode" in dtd
    assert f"{image}: " in dtd and "truncated" in dtd
    eurosat = block(out, "EuroSAT")
    assert eurosat.startswith(f"[{check.FAIL}]")
    assert f'Split file {split_path}: "test" entry 2' in eurosat and "has label 99" in eurosat
    assert "0 usable (0 with notes), 2 unusable" in out
    assert "Decoding DescribableTextures" in err  # the progress bar
    assert tree_snapshot(tmp_path) == before
    # --files-only skips decoding: the truncated file exists, so DTD passes that way
    code, out, _ = _check(capsys, tmp_path, "--dataset", "DescribableTextures", "--files-only")
    assert code == 0 and block(out, "DescribableTextures").startswith(f"[{check.NOTE}]")


def test_demo_shapes_and_image_folder_are_covered(tmp_path, capsys):
    from datasets import demo_shapes_generate

    demo_shapes_generate.main(["--root", str(tmp_path), "--size", "32", "--train", "2", "--val", "1", "--test", "1"])
    write_fixture(tmp_path / "src", "DescribableTextures")
    shutil.copytree(tmp_path / "src" / "dtd" / "images", tmp_path / "mine")
    shutil.rmtree(tmp_path / "src")
    capsys.readouterr()
    before = tree_snapshot(tmp_path)

    code, out, _ = _check(capsys, tmp_path, "--dataset", "DemoShapes")
    assert code == 0, out
    assert block(out, "DemoShapes").startswith(f"[{check.OK}] DemoShapes")
    assert "train 12  val 6  test 6  (6 classes)" in out

    # the user's own folder, given the way train.py takes it
    for how in (["--dataset-config-file", os.path.join(REPO, "configs", "datasets", "image_folder.yaml"),
                 "DATASET.IMAGE_FOLDER.DIR", "mine"], ["DATASET.IMAGE_FOLDER.DIR", "mine"]):
        code, out, _ = _check(capsys, tmp_path, *how)
        assert code == 0, out
        assert block(out, "ImageFolder").startswith(f"[{check.OK}] ImageFolder")
        assert "Checked 1 dataset(s)" in out
    assert tree_snapshot(tmp_path) == before  # no split file drawn on disk by the check

    open(os.path.join(tmp_path, "mine", "banded", "banded_0001.jpg"), "w").write("not an image")
    code, out, _ = _check(capsys, tmp_path, "DATASET.IMAGE_FOLDER.DIR", "mine")
    assert code == 1 and "banded_0001.jpg" in block(out, "ImageFolder")


def test_unknown_config_key_is_a_clean_error(tmp_path):
    with pytest.raises(ConfigError, match='Unknown config key "DATASET.IMAGE_FOLDER.DIRR"'):
        check.main(["--root", str(tmp_path), "DATASET.IMAGE_FOLDER.DIRR", "mine"])
