"""DemoShapes: the generator draws a deterministic benchmark tree that the dataset reads like a real one."""
import hashlib
import os

import pytest
from PIL import Image

from dassl.data.datasets import build_dataset
from dassl.utils import read_json, set_random_seed

import datasets  # noqa: F401  (registers DemoShapes)
from datasets.demo_shapes import CLASSES, SPLIT_FILE
from datasets.demo_shapes_generate import SETTINGS_FILE, generate
from tests.dataset_fixtures import dataset_cfg
from trainers.common.templates import dataset_template

SMALL = dict(size=32, train=3, val=1, test=2)


def _digests(dataset_dir):
    out = {}
    for dirpath, _, names in os.walk(os.path.join(dataset_dir, "images")):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_layout_and_split_file(tmp_path):
    root = generate(tmp_path, **SMALL)
    assert root == os.path.join(str(tmp_path), "demo_shapes")
    split = read_json(os.path.join(root, SPLIT_FILE))
    assert {k: len(v) for k, v in split.items()} == {"train": 3 * 6, "val": 6, "test": 2 * 6}
    for entries in split.values():
        for relpath, label, classname in entries:
            assert classname == CLASSES[label]
            assert relpath.startswith(classname.replace(" ", "_") + "/")
            with Image.open(os.path.join(root, "images", relpath)) as im:
                assert im.size == (32, 32) and im.mode == "RGB"
    assert sorted(os.listdir(os.path.join(root, "images"))) == sorted(c.replace(" ", "_") for c in CLASSES)
    assert read_json(os.path.join(root, SETTINGS_FILE))["train"] == 3


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path):
    a = _digests(generate(tmp_path / "a", seed=0, **SMALL))
    b = _digests(generate(tmp_path / "b", seed=0, **SMALL))
    c = _digests(generate(tmp_path / "c", seed=1, **SMALL))
    assert a == b
    assert len(set(a.values())) == len(a)  # every image differs from every other
    assert all(a[name] != c[name] for name in a)


def test_reuse_same_settings_refuse_other_settings(tmp_path, capsys):
    root = generate(tmp_path, **SMALL)
    before = _digests(root)
    assert generate(tmp_path, **SMALL) == root
    assert "reusing" in capsys.readouterr().out
    with pytest.raises(FileExistsError, match="demo_shapes.*Delete that folder"):
        generate(tmp_path, **dict(SMALL, test=5))
    assert _digests(root) == before  # nothing overwritten


def test_interrupted_generation_is_redrawn(tmp_path):
    partial = tmp_path / "demo_shapes.partial"
    (partial / "images").mkdir(parents=True)
    (partial / "images" / "half_written.jpg").write_bytes(b"")
    root = generate(tmp_path, **SMALL)
    assert not partial.exists()
    assert "half_written.jpg" not in _digests(root)


def test_dataset_reads_it_like_a_benchmark(tmp_path):
    generate(tmp_path, **SMALL)
    set_random_seed(1)
    dataset = build_dataset(dataset_cfg(tmp_path, "DemoShapes", num_shots=2, seed=1))
    assert dataset.classnames == list(CLASSES)
    assert len(dataset.train_x) == 2 * 6 and len(dataset.test) == 2 * 6
    assert all(os.path.isfile(d.impath) for d in dataset.train_x)
    assert dataset_template("DemoShapes").format("red circle") == "a drawing of a red circle."


def test_without_split_file_class_names_keep_spaces(tmp_path):
    root = generate(tmp_path, **SMALL)
    os.remove(os.path.join(root, SPLIT_FILE))
    dataset = build_dataset(dataset_cfg(tmp_path, "DemoShapes"))
    assert dataset.classnames == sorted(CLASSES)  # folders are labelled in sorted order


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 1 train"):
        generate(tmp_path, size=32, train=0, val=1, test=1)
