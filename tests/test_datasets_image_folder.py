"""ImageFolder: the user's own class folders or CSV; a split drawn once, saved, then reused."""
import json
import os
import shutil

import pytest

import datasets  # noqa: F401  (registers the datasets)
from dassl.data.datasets import build_dataset
from dassl.utils import set_random_seed
from datasets.split_files import DatasetError, DatasetNotFound
from tests.dataset_fixtures import dataset_cfg, write_fixture


def own_data(tmp_path):
    """Reuse the DTD fixture's class folders (4 classes x 6 images) as "my" data."""
    write_fixture(tmp_path / "src", "DescribableTextures")
    folder = tmp_path / "data" / "mine"
    shutil.copytree(tmp_path / "src" / "dtd" / "images", folder)
    return folder


def load(root, folder, csv="", num_shots=-1, seed=1, **opts):
    cfg = dataset_cfg(root, "ImageFolder", num_shots=num_shots, seed=seed)
    cfg.DATASET.IMAGE_FOLDER.DIR = str(folder)
    cfg.DATASET.IMAGE_FOLDER.CSV = csv
    for k, v in opts.items():
        cfg.DATASET.IMAGE_FOLDER[k.upper()] = v
    set_random_seed(seed)
    return build_dataset(cfg)


def test_class_folders_split_once_then_reused(tmp_path, capsys):
    folder = own_data(tmp_path)
    (folder / "banded" / "notes.txt").write_text("not an image")
    ds = load(tmp_path / "data", "mine", num_shots=2, seed=1)
    out = capsys.readouterr().out
    assert "drew a new split" in out and "ignoring 1 files" in out and "banded/notes.txt" in out
    assert ds.classnames == ["banded", "blotchy", "braided", "bubbly"]
    assert len(ds.train_x) == 8 and len(ds.val) == 4 and len(ds.test) == 4 * 2  # 6 -> 3/1/2
    split_path = folder / "split_ImageFolder.json"
    saved = json.loads(split_path.read_text())
    assert saved["settings"] == {"csv": "", "train_fraction": 0.5, "val_fraction": 0.2, "split_seed": 1}
    assert all(not os.path.isabs(p) for p, _, _ in saved["train"])

    # another seed (and the split_fewshot/ cache folder now inside) reuses the same split
    other = load(tmp_path / "data", str(folder), num_shots=-1, seed=5)
    assert "drew a new split" not in capsys.readouterr().out
    assert other.classnames == ds.classnames
    assert sorted(x.impath for x in other.test) == sorted(x.impath for x in ds.test)
    assert json.loads(split_path.read_text()) == saved


def test_csv_listing(tmp_path):
    folder = own_data(tmp_path)
    rows = ["path,label"] + [f"{c}/{f},{c.upper()}" for c in ("banded", "bubbly")
                             for f in sorted(os.listdir(folder / c))]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load(tmp_path, folder, csv="labels.csv")
    assert ds.classnames == ["BANDED", "BUBBLY"]
    assert len(ds.train_x) + len(ds.val) + len(ds.test) == 12
    (folder / "labels.csv").write_text("banded/nope.jpg,BANDED\n")
    (folder / "split_ImageFolder.json").unlink()
    with pytest.raises(DatasetError, match="1 of 1 images in .*labels.csv do not exist.*banded/nope.jpg"):
        load(tmp_path, folder, csv="labels.csv")


def test_changed_images_or_settings_stop_with_a_fix(tmp_path):
    folder = own_data(tmp_path)
    load(tmp_path, folder)
    with pytest.raises(DatasetError, match="TRAIN_FRACTION back|drawn with"):
        load(tmp_path, folder, train_fraction=0.6)
    (folder / "blotchy" / "blotchy_0001.jpg").unlink()
    with pytest.raises(DatasetError, match="0 new .*1 gone .*blotchy_0001.jpg.*Delete .*split_ImageFolder.json"):
        load(tmp_path, folder)
    (folder / "split_ImageFolder.json").unlink()
    assert len(load(tmp_path, folder).classnames) == 4

    # a hand-made split file (no recorded settings) is used as it is
    split_path = folder / "split_ImageFolder.json"
    data = json.loads(split_path.read_text())
    del data["settings"]
    data["train"], data["test"] = data["test"], data["train"]
    split_path.write_text(json.dumps(data))
    ds = load(tmp_path, folder, train_fraction=0.9)
    assert len(ds.train_x) == len(data["train"]) == 4 * 2


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetNotFound, match="set DATASET.IMAGE_FOLDER.DIR"):
        load(tmp_path, "")
    with pytest.raises(DatasetNotFound, match="missing_folder.*does not exist"):
        load(tmp_path, "missing_folder")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match="no class sub-folders"):
        load(tmp_path, "flat")
