"""ImageNet (ILSVRC-2012): wnid folders under images/train and images/val, names from classnames.txt.

Listing 1.28M files is slow, so the parsed lists are cached in `<dataset_dir>/image_lists.json`
(file names per class folder). The cache is keyed on classnames.txt's content and on the
modification time of every class folder: adding, removing or renaming images (or class
folders) changes those, so the lists are rebuilt with a message; nothing else is checked.
"""
import hashlib
import os

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import listdir_nohidden, read_json, write_json
from tqdm import tqdm

from .base import BenchmarkDataset
from .split_files import DOCS, DatasetError, Record, Splits, join_rel

CLASSNAMES_FILE = "classnames.txt"
LISTS_FILE = "image_lists.json"
LISTS_FORMAT = 1


def read_classnames(path):
    """dict wnid -> class name from lines 'n01440764 tench' (file order kept)."""
    if not os.path.isfile(path):
        raise DatasetError(f"Missing {path}: the 1000 lines 'wnid class name' (see {DOCS}, section ImageNet).")
    classnames = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            wnid, _, name = line.strip().partition(" ")
            if not wnid:
                continue
            if not name.strip():
                raise DatasetError(f"{path} line {n}: expected 'wnid class name', got {line.strip()!r}.")
            if wnid in classnames:
                raise DatasetError(f"{path} line {n}: wnid {wnid} appears twice.")
            classnames[wnid] = name.strip()
    return classnames


def imagenet_label_order(classnames):
    """ImageNet labels follow sorted wnids."""
    return sorted(classnames)


def class_folders(image_dir, classnames, classnames_path):
    """Sorted class sub-folders of `image_dir` (plain files such as README.txt are not classes);
    every folder must be a wnid listed in classnames.txt."""
    if not os.path.isdir(image_dir):
        raise DatasetError(f"Missing image folder {image_dir} (layout: {DOCS}).")
    folders = sorted(f for f in listdir_nohidden(image_dir) if os.path.isdir(os.path.join(image_dir, f)))
    if not folders:
        raise DatasetError(f"No class folders in {image_dir} (layout: {DOCS}).")
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise DatasetError(f"{len(unknown)} class folders in {image_dir} are not in {classnames_path}, "
                           f"first: {', '.join(unknown[:5])}. Use the classnames.txt described in {DOCS}.")
    return folders


def list_class_images(image_dir, folders, desc):
    """{folder: sorted image names}; an empty class folder is an error."""
    lists = {}
    for folder in tqdm(folders, desc=desc, unit="class", leave=False):
        names = sorted(listdir_nohidden(os.path.join(image_dir, folder)))
        if not names:
            raise DatasetError(f"Class folder {os.path.join(image_dir, folder)} is empty; re-extract it.")
        lists[folder] = names
    return lists


@DATASET_REGISTRY.register()
class ImageNet(BenchmarkDataset):
    """Train: images/train; val and test: both the 50k images/val (no held-out val split).
    Few-shot sampling (and its cache) covers train only."""

    dataset_dir = "imagenet"
    image_dir = "images"
    verify_images = False  # lists come from directory listings checked against the cache key

    @classmethod
    def read_splits(cls, dataset_dir, may_write=True):
        classnames_path = os.path.join(dataset_dir, CLASSNAMES_FILE)
        classnames = read_classnames(classnames_path)
        lists = cls.image_lists(dataset_dir, classnames, classnames_path, may_write)
        wnids = sorted(lists["train"])
        if sorted(lists["val"]) != wnids:
            only_train = sorted(set(wnids) - set(lists["val"]))
            only_val = sorted(set(lists["val"]) - set(wnids))
            raise DatasetError(f"ImageNet: images/train and images/val hold different classes (only in train: "
                               f"{only_train[:5]}, only in val: {only_val[:5]}). Val must be sorted into the "
                               f"same wnid folders (see {DOCS}, section ImageNet).")
        label = {w: i for i, w in enumerate(wnids)}

        def records(split):  # prefix built once per class: this runs over 1.28M files
            out = []
            for w in wnids:
                prefix = join_rel(cls.image_dir, split, w) + "/"
                out.extend(Record(prefix + f, label[w], classnames[w]) for f in lists[split][w])
            return out

        return Splits(records("train"), None, records("val"))

    @classmethod
    def image_lists(cls, dataset_dir, classnames, classnames_path, may_write):
        """{"train": {wnid: [file, ...]}, "val": {...}}, from the cache when its key matches."""
        cache = os.path.join(dataset_dir, LISTS_FILE)
        with open(classnames_path, "rb") as f:
            key = {"format": LISTS_FORMAT, "classnames_sha256": hashlib.sha256(f.read()).hexdigest()}
        folders = {}
        for split in ("train", "val"):
            split_dir = os.path.join(dataset_dir, cls.image_dir, split)
            folders[split] = class_folders(split_dir, classnames, classnames_path)
            key[split] = [[w, os.stat(os.path.join(split_dir, w)).st_mtime_ns] for w in folders[split]]
        if os.path.isfile(cache):
            try:
                data = read_json(cache)
                if data.get("key") == key:
                    print(f"Loading image lists from {cache}")
                    return data["lists"]
                print(f"Image folders changed since {cache} was written: listing them again.")
            except (OSError, ValueError, KeyError) as e:
                print(f"Image-list cache {cache} is unreadable ({e}): listing the folders again.")
        lists = {split: list_class_images(os.path.join(dataset_dir, cls.image_dir, split), folders[split],
                                          desc=f"Listing ImageNet {split}")
                 for split in ("train", "val")}
        if may_write:
            try:
                write_json({"key": key, "lists": lists}, cache)
                print(f"Saved image lists to {cache} (reused until the folders change)")
            except OSError as e:
                print(f"WARNING: could not save the image-list cache {cache} ({e}); the folders are "
                      "listed again on every start.")
        return lists
