"""Split files (`split_zhou_<Name>.json`) and the algorithms that build a split when none exists.

Items travel as light `Record`s (path relative to the dataset folder, label, class name) until
the dataset's final lists are known; only those become `Datum`s (see `datasets.base`). That keeps
sampling, caching and checking independent of where DATASET.ROOT happens to be.

A missing split file is never silent: the reference code quietly draws a new random split,
which makes results incomparable with published numbers. We build it the same way (same
proportions and per-class procedure) but say so loudly, and save it so later runs reuse it.
New splits are drawn from a private RNG (seed `NEW_SPLIT_SEED`) over sorted file lists, so
they are reproducible and do not shift the global `random` stream the few-shot sampler uses.
"""
import os
import random
from collections import OrderedDict, namedtuple

from dassl.utils import listdir_nohidden, read_json, write_json
from dassl.utils.errors import UserError

Record = namedtuple("Record", ["relpath", "label", "classname"])  # relpath: posix, under dataset_dir
Splits = namedtuple("Splits", ["train", "val", "test"])  # val None: no val split (val = test)

NEW_SPLIT_SEED = 1
DOCS = "DATASETS.md"


class DatasetError(UserError):
    """A dataset that cannot be used as it is on disk; the message says what to fix."""


class DatasetNotFound(DatasetError):
    """DATASET.ROOT or the dataset's folder does not exist."""


class SplitFileMissing(DatasetError):
    """The split file is absent and this caller may not build one (e.g. the data check)."""


def join_rel(*parts):
    """Posix relative path from parts, skipping empty ones (records are OS-independent)."""
    return "/".join(p.strip("/") for p in parts if p)


def read_split(split_path, image_prefix):
    """Read a split file; `image_prefix` is the image folder relative to the dataset folder
    ("" when paths in the file are already relative to it, as for StanfordCars)."""
    try:
        data = read_json(split_path)
    except ValueError as e:
        raise DatasetError(f"Split file {split_path} is not valid JSON ({e}). Replace it with the "
                           f"official file (see {DOCS}) or delete it to build a new split.") from e
    out = []
    for key in Splits._fields:
        entries = data.get(key) if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise DatasetError(f'Split file {split_path} has no "{key}" list; expected '
                               '{"train": [[path, label, classname], ...], "val": [...], "test": [...]}. '
                               f"Replace it with the official file (see {DOCS}).")
        records = []
        for i, entry in enumerate(entries):
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                    and isinstance(entry[1], int) and not isinstance(entry[1], bool)):
                raise DatasetError(f'Split file {split_path}: "{key}" entry {i} is {entry!r}, '
                                   "expected [relative path, integer label, class name].")
            records.append(Record(join_rel(image_prefix, entry[0]), entry[1], str(entry[2])))
        out.append(records)
    splits = Splits(*out)
    check_labels(splits, f"Split file {split_path}")
    return splits


def check_labels(splits, source):
    """Labels must be 0..C-1, C the number of classes in the train list, and each label must
    keep one class name (and each name one label): a test label outside the classes would
    silently count as a wrong prediction, a train one would crash the loss or add a phantom
    class, and a renamed class would get the wrong prompt."""
    n_classes = len({r.label for r in splits.train})
    fix = "Fix the entry or use the official split file (see " + DOCS + ")."
    names, labels = {}, {}
    for key, records in zip(Splits._fields, splits):
        for i, r in enumerate(records or ()):
            if r.label < 0 or r.label >= n_classes:
                raise DatasetError(f'{source}: "{key}" entry {i} ({r.relpath}) has label {r.label}, outside the '
                                   f"{n_classes} classes of the train list (0-{n_classes - 1}). {fix}")
            first = names.setdefault(r.label, (r.classname, key, i))
            if first[0] != r.classname:
                raise DatasetError(f'{source}: label {r.label} is "{first[0]}" in "{first[1]}" entry {first[2]} but '
                                   f'"{r.classname}" in "{key}" entry {i} ({r.relpath}). {fix}')
            other = labels.setdefault(r.classname, (r.label, key, i))
            if other[0] != r.label:
                raise DatasetError(f'{source}: class "{r.classname}" has label {other[0]} in "{other[1]}" entry '
                                   f'{other[2]} but {r.label} in "{key}" entry {i} ({r.relpath}). {fix}')


def write_split(splits, split_path, image_prefix, extra=None):
    """Save records in the split-file format, paths relative to the image folder."""
    cut = len(image_prefix) + 1 if image_prefix else 0
    data = {key: [[r.relpath[cut:], r.label, r.classname] for r in records]
            for key, records in zip(Splits._fields, splits)}
    if extra:
        data.update(extra)
    write_json(data, split_path)


def load_or_build_split(split_path, image_prefix, build, dataset_name, may_write=True):
    """Read `split_path`; if it is missing, warn loudly, call `build(rng)` and save the result.

    `may_write=False` (the data check) turns a missing file into `SplitFileMissing` instead.
    """
    if os.path.isfile(split_path):
        return read_split(split_path, image_prefix)
    if not may_write:
        raise SplitFileMissing(
            f"{dataset_name}: split file {split_path} is missing. Put the official file there "
            f"(see {DOCS}, section {dataset_name}); without it training builds a NEW random split "
            "whose results are not comparable with published numbers.")
    bar = "=" * 78
    print(f"{bar}\nWARNING: {dataset_name} split file not found: {split_path}\n"
          f"Building a NEW random train/val/test split from the files on disk (seed {NEW_SPLIT_SEED}).\n"
          "Results on this split are NOT comparable with published numbers, which use the\n"
          f"official split file (where to get it: {DOCS}, section {dataset_name}).\n{bar}")
    splits = build(random.Random(NEW_SPLIT_SEED))
    save_new_split(splits, split_path, image_prefix)
    return splits


def save_new_split(splits, split_path, image_prefix, extra=None):
    """Save a freshly built split so later runs reuse it; say where (or why it could not)."""
    try:
        write_split(splits, split_path, image_prefix, extra)
        print(f"Saved the new split to {split_path}; later runs reuse it "
              "(delete it to draw a new one).")
    except OSError as e:
        print(f"WARNING: could not save the new split to {split_path} ({e}); every run will draw "
              "it again from the same seed. Make the dataset folder writable to keep it.")


def split_trainval(trainval, rng, p_val=0.2):
    """Per label (first-appearance order): shuffle, hold out round(n * p_val) items as val."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    by_label = OrderedDict()
    for r in trainval:
        by_label.setdefault(r.label, []).append(r)
    train, val = [], []
    for items in by_label.values():
        n_val = round(len(items) * p_val)
        if n_val < 1:
            raise DatasetError(f'Class "{items[0].classname}" has only {len(items)} train+val images: '
                               "too few to hold out a validation image. Add images or use the official split file.")
        items = list(items)
        rng.shuffle(items)
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def split_per_class(groups, rng, p_trn=0.5, p_val=0.2):
    """Cut each class's records (dict label -> list, in its order) into train/val/test:
    shuffle, then round(n * p_trn) train, round(n * p_val) val, the rest test."""
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    train, val, test = [], [], []
    for records in groups.values():
        records = list(records)
        rng.shuffle(records)
        n_train = round(len(records) * p_trn)
        n_val = round(len(records) * p_val)
        if min(n_train, n_val, len(records) - n_train - n_val) < 1:
            raise DatasetError(f'Class "{records[0].classname}" has {len(records)} images: too few for a '
                               "train/val/test split. Add images or use the official split file.")
        train += records[:n_train]
        val += records[n_train:n_train + n_val]
        test += records[n_train + n_val:]
    return Splits(train, val, test)


def split_class_folders(dataset_dir, image_prefix, rng, ignored=(), new_cnames=None):
    """Folder-per-class datasets: labels follow sorted folder names (minus `ignored`), class
    names are folder names unless renamed by `new_cnames`; images sorted, then cut 50/20/30."""
    image_dir = os.path.join(dataset_dir, image_prefix)
    categories = sorted(c for c in listdir_nohidden(image_dir)
                        if c not in ignored and os.path.isdir(os.path.join(image_dir, c)))
    if not categories:
        raise DatasetError(f"No class folders in {image_dir}; expected one sub-folder of images per class.")
    groups = OrderedDict()
    for label, category in enumerate(categories):
        cname = (new_cnames or {}).get(category, category)
        images = sorted(listdir_nohidden(os.path.join(image_dir, category)))
        groups[label] = [Record(join_rel(image_prefix, category, im), label, cname) for im in images]
    return split_per_class(groups, rng)


def read_lines(path, what):
    """Non-empty stripped lines of an annotation list; a missing file names itself and `what`."""
    if not os.path.isfile(path):
        raise DatasetError(f"Missing {what}: {path}. It ships with the dataset archive (see {DOCS}).")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def load_mat(path, dataset_name):
    """Read a MATLAB annotation file (needs scipy, which is optional: only used without a split file)."""
    if not os.path.isfile(path):
        raise DatasetError(f"{dataset_name}: neither the split file nor {path} exists. Download the "
                           f"official split file (see {DOCS}, section {dataset_name}).")
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise DatasetError(f"{dataset_name}: building a split from {path} needs scipy "
                           "(pip install scipy), or download the official split file instead "
                           f"(see {DOCS}, section {dataset_name}).") from e
    return loadmat(path)
