"""ImageFolder: the user's own data, as class sub-folders or as a CSV of `path,label` rows.

The train/val/test split is drawn once (DATASET.IMAGE_FOLDER.SPLIT_SEED, fractions from the
config) and saved as `split_ImageFolder.json` in the folder; later runs reuse it, so every
seed and method sees the same split. If the images or the split settings no longer match
the saved split, loading stops and says how to proceed rather than quietly mixing the two.
"""
import csv
import os
import random
from collections import OrderedDict

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden, read_json

from .base import BenchmarkDataset
from .fewshot import FEWSHOT_DIR
from .split_files import (DatasetError, DatasetNotFound, Record, read_split, save_new_split, split_per_class)

SPLIT_FILE = "split_ImageFolder.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
RESERVED = {FEWSHOT_DIR}  # our own cache folder is not a class


def _settings(opts):
    return {"csv": opts.CSV, "train_fraction": opts.TRAIN_FRACTION, "val_fraction": opts.VAL_FRACTION,
            "split_seed": opts.SPLIT_SEED}


def records_from_folders(folder):
    """Class sub-folders (sorted) -> records of every image file below each, sorted."""
    classes = sorted(c for c in listdir_nohidden(folder)
                     if os.path.isdir(os.path.join(folder, c)) and c not in RESERVED)
    if not classes:
        raise DatasetError(f"ImageFolder: no class sub-folders in {folder}. Put each class's images in "
                           "<folder>/<class name>/, or list them in a CSV (DATASET.IMAGE_FOLDER.CSV).")
    records, skipped = [], []
    for label, cname in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, cname)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(f for f in filenames if not f.startswith(".")):
                rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    records.append(Record(rel, label, cname))
                else:
                    skipped.append(rel)
    if skipped:
        print(f"ImageFolder: ignoring {len(skipped)} files without an image extension "
              f"({', '.join(IMAGE_EXTENSIONS)}), e.g. {', '.join(skipped[:3])}")
    return records


def records_from_csv(folder, csv_path):
    """Rows `path,label` (optional header row 'path,label'); paths relative to `folder`,
    labels are class names; classes are numbered in sorted name order."""
    if not os.path.isfile(csv_path):
        raise DatasetError(f"ImageFolder: DATASET.IMAGE_FOLDER.CSV {csv_path} does not exist.")
    rows = []
    with open(csv_path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            if not row or (n == 1 and [c.strip().lower() for c in row] == ["path", "label"]):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise DatasetError(f"ImageFolder: {csv_path} line {n} is {row!r}; expected 'path,label'.")
            rows.append((row[0].strip().replace("\\", "/"), row[1].strip()))
    if not rows:
        raise DatasetError(f"ImageFolder: {csv_path} lists no images.")
    label = {c: i for i, c in enumerate(sorted({c for _, c in rows}))}
    records = [Record(p, label[c], c) for p, c in rows]
    missing = [r.relpath for r in records if not os.path.isfile(os.path.join(folder, r.relpath))]
    if missing:
        raise DatasetError(f"ImageFolder: {len(missing)} of {len(records)} images in {csv_path} do not exist "
                           f"under {folder}, first: {', '.join(missing[:5])}. Paths are relative to "
                           "DATASET.IMAGE_FOLDER.DIR.")
    return records


@DATASET_REGISTRY.register()
class ImageFolder(BenchmarkDataset):
    @classmethod
    def split_source(cls):
        return SPLIT_FILE

    @classmethod
    def resolve_dataset_dir(cls, cfg):
        folder = cfg.DATASET.IMAGE_FOLDER.DIR
        if not folder:
            raise DatasetNotFound("ImageFolder: set DATASET.IMAGE_FOLDER.DIR to your folder of class "
                                  "sub-folders (absolute, or relative to DATASET.ROOT).")
        folder = os.path.join(os.path.expanduser(cfg.DATASET.ROOT), os.path.expanduser(folder))
        folder = os.path.abspath(folder)
        if not os.path.isdir(folder):
            raise DatasetNotFound(f"ImageFolder: folder {folder} (DATASET.ROOT + DATASET.IMAGE_FOLDER.DIR) "
                                  "does not exist.")
        return folder

    def load_splits(self, cfg):
        return self.splits_in(cfg, self.dataset_dir, may_write=True)

    @classmethod
    def splits_for_check(cls, cfg, dataset_dir):
        return cls.splits_in(cfg, dataset_dir, may_write=False)

    @classmethod
    def splits_in(cls, cfg, folder, may_write):
        """The saved split (checked against the images and settings), or a new one drawn
        (saved only if `may_write`: the data check draws it in memory)."""
        opts = cfg.DATASET.IMAGE_FOLDER
        if opts.CSV:
            records = records_from_csv(folder, os.path.join(folder, os.path.expanduser(opts.CSV)))
        else:
            records = records_from_folders(folder)
        split_path = os.path.join(folder, SPLIT_FILE)
        settings = _settings(opts)
        if os.path.isfile(split_path):
            splits = read_split(split_path, "")
            cls._check_split_matches(split_path, read_json(split_path).get("settings"), settings, splits, records)
            return splits
        groups = OrderedDict()
        for r in records:
            groups.setdefault(r.label, []).append(r)
        rng = random.Random(opts.SPLIT_SEED)
        splits = split_per_class(groups, rng, p_trn=opts.TRAIN_FRACTION, p_val=opts.VAL_FRACTION)
        if may_write:
            print(f"ImageFolder: drew a new split of {folder} (seed {opts.SPLIT_SEED}).")
            save_new_split(splits, split_path, "", extra={"settings": settings})
        return splits

    @staticmethod
    def _check_split_matches(split_path, saved, settings, splits, records):
        fix = f"Delete {split_path} to draw a new split (results will then differ from earlier runs)"
        if saved is not None and saved != settings:  # None: a hand-made split file, settings unknown
            raise DatasetError(f"ImageFolder: {split_path} was drawn with {saved}, but the config now says "
                               f"{settings}. {fix}, or set DATASET.IMAGE_FOLDER back.")
        in_split = {(r.relpath, r.classname) for s in splits for r in s}
        on_disk = {(r.relpath, r.classname) for r in records}
        if in_split != on_disk:
            new = sorted(on_disk - in_split)
            gone = sorted(in_split - on_disk)
            raise DatasetError(f"ImageFolder: the images changed since {split_path} was drawn: {len(new)} new "
                               f"(e.g. {[p for p, _ in new[:3]]}), {len(gone)} gone (e.g. {[p for p, _ in gone[:3]]}). "
                               f"{fix}, or restore the files.")
