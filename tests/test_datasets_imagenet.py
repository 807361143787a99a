"""ImageNet and its four shift sets: image-list cache, train-only few-shot, the A/R
200-class contract the TaskRes trainer relies on, V2's numbered folders."""
import json
import os

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import build_dataset
from dassl.utils import set_random_seed
from datasets.split_files import DatasetError
from tests.dataset_fixtures import (dataset_cfg, expected_classnames, imagenet_subset_classnames,
                                    write_fixture)


def load(root, name, num_shots=-1, seed=1, subsample="all"):
    set_random_seed(seed)
    return build_dataset(dataset_cfg(root, name, num_shots=num_shots, seed=seed, subsample=subsample))


def test_image_lists_are_cached_and_rebuilt_when_a_folder_changes(tmp_path, capsys):
    d = write_fixture(tmp_path, "ImageNet")
    first = load(tmp_path, "ImageNet")
    assert "Saved image lists" in capsys.readouterr().out
    with open(os.path.join(d, "image_lists.json")) as f:
        lists = json.load(f)["lists"]
    assert sorted(lists["train"]) == sorted(os.listdir(os.path.join(d, "images", "train")))

    again = load(tmp_path, "ImageNet")
    assert "Loading image lists" in capsys.readouterr().out
    assert [x.impath for x in again.train_x] == [x.impath for x in first.train_x]

    class_dir = os.path.join(d, "images", "train", "n01443537")
    src = os.path.join(class_dir, sorted(os.listdir(class_dir))[0])
    new = os.path.join(class_dir, "n01443537_99999.JPEG")
    with open(src, "rb") as a, open(new, "wb") as b:
        b.write(a.read())
    st = os.stat(class_dir)  # filesystems with coarse timestamps: make the change visible
    os.utime(class_dir, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = load(tmp_path, "ImageNet")
    assert "changed" in capsys.readouterr().out
    assert new in [x.impath for x in changed.train_x]
    assert len(changed.train_x) == len(first.train_x) + 1


def test_imagenet_labels_names_and_train_only_fewshot(tmp_path):
    d = write_fixture(tmp_path, "ImageNet", n_classes=4, per_class=6)
    ds = load(tmp_path, "ImageNet", num_shots=2, seed=1)
    assert ds.classnames == ["tench", "goldfish", "great white shark", "tiger shark"]
    assert len(ds.train_x) == 8
    # No val split: the few-shot val (min(K, 4) per class) comes from the train images outside
    # the subset, never from the val folder, which is the test split.
    assert len(ds.test) == 4 * 3 and len(ds.val) == 4 * 2
    assert not {d.impath for d in ds.val} & {d.impath for d in ds.train_x}
    assert all("/images/train/" in d.impath for d in ds.val)
    assert all("/images/val/" in x.impath for x in ds.test)
    with open(os.path.join(d, "split_fewshot", "shot_2-seed_1.json")) as f:
        cache = json.load(f)
    assert cache["val"] is None and len(cache["train"]) == 8
    base = load(tmp_path, "ImageNet", num_shots=2, seed=1, subsample="base")
    assert base.classnames == ["tench", "goldfish"] and {x.label for x in base.test} == {0, 1}


def test_imagenet_val_must_hold_the_same_classes(tmp_path):
    d = write_fixture(tmp_path, "ImageNet", n_classes=3)
    val_dir = os.path.join(d, "images", "val", "n01484850")
    for f in os.listdir(val_dir):
        os.remove(os.path.join(val_dir, f))
    os.rmdir(val_dir)
    with pytest.raises(DatasetError, match="only in train: \\['n01484850'\\]"):
        load(tmp_path, "ImageNet")


def test_imagenet_missing_classnames_and_unknown_folder(tmp_path):
    d = write_fixture(tmp_path, "ImageNet", n_classes=3)
    os.makedirs(os.path.join(d, "images", "train", "n99999999"))
    with pytest.raises(DatasetError, match="n99999999.*classnames.txt"):
        load(tmp_path, "ImageNet")
    os.remove(os.path.join(d, "classnames.txt"))
    with pytest.raises(DatasetError, match=f"Missing {os.path.join(d, 'classnames.txt')}"):
        load(tmp_path, "ImageNet")


@pytest.mark.parametrize("name", ["ImageNetA", "ImageNetR"])
def test_200_class_subsets_expose_their_imagenet_labels(tmp_path, name):
    d = write_fixture(tmp_path, name, n_classes=3, imagenet_classes=8)
    assert os.path.isfile(os.path.join(d, "imagenet-a" if name == "ImageNetA" else "imagenet-r", "README.txt"))
    ds = load(tmp_path, name, num_shots=16)
    names, indices = imagenet_subset_classnames(name, n_classes=3, imagenet_classes=8)
    assert ds.classnames == names == ["goldfish", "tiger shark", "electric ray"]
    assert ds.imagenet_class_indices == indices == [1, 3, 5]
    assert ds.imagenet_classnames == expected_classnames("ImageNet", n_classes=8)
    assert [ds.imagenet_classnames[i] for i in ds.imagenet_class_indices] == ds.classnames
    assert ds.train_x is ds.test and ds.val is None and len(ds.test) == 3 * 6


def test_shift_sets_fall_back_to_imagenets_classnames(tmp_path):
    write_fixture(tmp_path, "ImageNet", n_classes=6)
    d = write_fixture(tmp_path, "ImageNetA", n_classes=3, imagenet_classes=6)
    os.remove(os.path.join(d, "classnames.txt"))
    ds = load(tmp_path, "ImageNetA")
    assert ds.imagenet_class_indices == [1, 3, 5]
    os.remove(os.path.join(tmp_path, "imagenet", "classnames.txt"))
    with pytest.raises(DatasetError, match="Copy ImageNet's classnames.txt"):
        load(tmp_path, "ImageNetA")


def test_imagenetv2_folders_are_labels_in_numeric_order(tmp_path):
    d = write_fixture(tmp_path, "ImageNetV2")  # 12 classes: folders 0..11
    ds = load(tmp_path, "ImageNetV2")
    assert ds.classnames == expected_classnames("ImageNetV2")
    in_ten = [x for x in ds.test if os.path.basename(os.path.dirname(x.impath)) == "10"]
    assert in_ten and all(x.label == 10 and x.classname == "brambling" for x in in_ten)
    image_dir = os.path.join(d, "imagenetv2-matched-frequency-format-val")
    os.rename(os.path.join(image_dir, "7"), os.path.join(image_dir, "seven"))
    with pytest.raises(DatasetError, match=r"missing: \['7'\], unexpected: \['seven'\]"):
        load(tmp_path, "ImageNetV2")


def test_sketch_and_test_only_rules(tmp_path, capsys):
    write_fixture(tmp_path, "ImageNetSketch")
    ds = load(tmp_path, "ImageNetSketch", num_shots=4)
    assert "test-only" in capsys.readouterr().out
    assert ds.classnames == expected_classnames("ImageNetSketch") and len(ds.test) == 4 * 6
    with pytest.raises(DatasetError, match="test-only.*SUBSAMPLE_CLASSES all"):
        load(tmp_path, "ImageNetSketch", subsample="base")
