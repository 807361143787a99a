"""The flow every dataset shares: find the folder, read the split, few-shot, subsample, check.

A dataset class sets `dataset_dir` (its folder under DATASET.ROOT) and implements the
classmethod `read_splits(dataset_dir, may_write=True) -> Splits` of `Record`s; the data
check calls the same method with `may_write=False`, so both read the data identically.
"""
import os
import random

from dassl.data.datasets import DatasetBase, Datum
from tqdm import tqdm

from .fewshot import check_subsample, sample_fewshot, subsample_classes
from .subset_files import is_2sfs_file, read_2sfs, read_subset, subset_hash, write_subset
from .split_files import DOCS, DatasetError, DatasetNotFound, load_or_build_split, split_class_folders

MAX_LISTED = 5  # how many missing files an error names


def locate_dataset_dir(root, folder, dataset_name):
    """Absolute dataset folder under `root`, with an actionable error if either is missing."""
    if not root:
        raise DatasetNotFound("DATASET.ROOT is empty: pass --root /path/to/data (the folder that holds "
                              f"the dataset folders, see {DOCS}).")
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetNotFound(f"DATASET.ROOT {root} does not exist or is not a folder: pass --root with the "
                              f"folder that holds the dataset folders (see {DOCS}).")
    path = os.path.join(root, folder)
    if not os.path.isdir(path):
        present = sorted(d for d in os.listdir(root) if not d.startswith("."))
        raise DatasetNotFound(
            f"{dataset_name}: folder {path} not found. Download and extract it so that it is named "
            f"'{folder}' under DATASET.ROOT (layout: {DOCS}, section {dataset_name}). "
            f"Folders under {root}: {', '.join(present) or '(none)'}.")
    return path


def find_missing(dataset_dir, records, desc=None):
    """Records whose image file does not exist (keeps order; one stat per record).
    `desc` shows a progress bar (the data check stats whole datasets)."""
    if desc:
        records = tqdm(records, desc=desc, unit="img", leave=False, mininterval=1.0)
    return [r for r in records if not os.path.isfile(os.path.join(dataset_dir, r.relpath))]


def missing_files_message(dataset_name, dataset_dir, missing, total, source):
    shown = "\n  ".join(os.path.join(dataset_dir, r.relpath) for r in missing[:MAX_LISTED])
    return (f"{dataset_name}: {len(missing)} of {total} images listed in {source} "
            f"are missing, first:\n  "
            f"{shown}\nRe-extract the dataset archive into {dataset_dir} (layout: {DOCS}); "
            "if the files are really gone, use the split file that matches your copy.")


def sorted_classnames(records):
    """Class names in label order (the class list a subset file is tied to)."""
    return [name for _, name in sorted({(r.label, r.classname) for r in records})]


def selection_split(cfg, name, full_train, full_val, train, fewshot_val, test):
    """The validation records the run's protocol allows (the few-shot train subset is drawn
    before this and never depends on it):
    nov: none; fsval (and ""): the few-shot val drawn with the train subset, or, for a dataset
    without a val split (ImageNet, whose reference code validates on test), min(K, 4) images per
    class from the train images outside the subset, drawn by a private RNG; fullval: the full
    val split; oracle: the full val split, or the test split where there is none (official)."""
    protocol = cfg.get("PROTOCOL", "")
    shots = cfg.DATASET.NUM_SHOTS
    if protocol == "nov":
        return None, None
    if protocol in ("fullval", "oracle"):
        if full_val is None and protocol == "oracle":
            return test, "test"
        if full_val is None:
            raise DatasetError(f"{name} has no validation split (its reference code validates on "
                               "test), so PROTOCOL fullval has nothing to select on; use PROTOCOL fsval "
                               "(a few-shot val drawn from the training images) or nov.")
        return full_val, "full val"
    if full_val is not None or shots < 1:
        if fewshot_val is None:  # a full-data run on a dataset without a val split
            return None, None
        return fewshot_val, "few-shot val" if shots >= 1 else "full val"
    chosen = {r.relpath for r in train}
    rest = [r for r in full_train if r.relpath not in chosen]
    rng = random.Random(f"fsval-{max(cfg.SEED, 0)}")  # private: the global draws stay Dassl's
    per_class = {}
    for record in rest:
        per_class.setdefault(record.label, []).append(record)
    k = min(shots, 4)
    drawn = [r for label in per_class for r in rng.sample(per_class[label], min(k, len(per_class[label])))]
    return drawn, "few-shot val drawn from the train images outside the subset"


class BenchmarkDataset(DatasetBase):
    """Base of every dataset here. `test_only`: a distribution-shift test set (train_x = test =
    all images; few-shot and class subsampling do not apply). `verify_images=False` for lists
    taken from directory listings, which exist by construction (saves a stat per image)."""

    test_only = False
    verify_images = True

    def __init__(self, cfg):
        name = type(self).__name__
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        check_subsample(subsample)
        if self.test_only and subsample != "all":
            raise DatasetError(f"{name} is a test-only set evaluated on all its classes; set "
                               f"DATASET.SUBSAMPLE_CLASSES all (got {subsample!r}).")
        self.dataset_dir = self.resolve_dataset_dir(cfg)
        train, val, test = self.load_splits(cfg)

        if self.test_only:
            if cfg.DATASET.NUM_SHOTS >= 1:
                print(f"{name} is test-only: DATASET.NUM_SHOTS={cfg.DATASET.NUM_SHOTS} does not apply; "
                      f"using all {len(test)} images.")
            data = self._to_datums(test)
            super().__init__(train_x=data, test=data)
            return

        full_train, full_val = train, val
        subset_file = cfg.DATASET.get("SUBSET_FILE", "")
        if subset_file:
            train, val = self.read_subset_file(cfg, subset_file, full_train, full_val)
        else:
            train, val = sample_fewshot(self, train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED,
                                        subset_seed=cfg.DATASET.get("FEWSHOT_SEED", -1))
        val, val_source = selection_split(cfg, name, full_train, full_val, train, val, test)
        self.subset = (train, val) if cfg.DATASET.NUM_SHOTS >= 1 else None
        self.subset_hash = subset_hash(train, val) if self.subset else None
        self.subset_key = (name, cfg.DATASET.NUM_SHOTS, cfg.SEED, sorted_classnames(full_train))
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        test = self._to_datums(test)
        val = None if val is None else self._to_datums(val)
        super().__init__(train_x=self._to_datums(train), val=val, test=test)
        self.val_source = val_source

    def read_subset_file(self, cfg, path, full_train, full_val):
        """(train, few-shot val) records from a subset file made for this dataset and class list,
        or from a 2SFS split file."""
        name = type(self).__name__
        if is_2sfs_file(path):
            train, val, header = read_2sfs(path, list(full_train) + list(full_val or []), full_val is not None)
        else:
            train, val, header = read_subset(path, name, sorted_classnames(full_train))
        if header.get("shots") != cfg.DATASET.NUM_SHOTS:
            raise DatasetError(f"DATASET.SUBSET_FILE {path} holds a {header.get('shots')}-shot subset, but "
                               f"DATASET.NUM_SHOTS is {cfg.DATASET.NUM_SHOTS}; set them alike.")
        known = {r.relpath for r in full_train}
        unknown = [r.relpath for r in train if r.relpath not in known]
        if unknown:
            raise DatasetError(f"DATASET.SUBSET_FILE {path} lists {len(unknown)} image(s) that are not in "
                               f"{name}'s train split here (first: {unknown[0]}); it was made from another split file.")
        print(f"Few-shot subset read from {path} (sha256 {header['sha256'][:12]}, seed {header.get('seed')})")
        return train, val

    def export_subset(self, path):
        """Write the few-shot subset this run uses (nothing for a test-only or zero-shot run)."""
        if not getattr(self, "subset", None):
            return None
        name, shots, seed, classnames = self.subset_key
        return write_subset(path, name, shots, seed, classnames, *self.subset)

    @classmethod
    def split_source(cls):
        """The file(s) that list the images, named in errors about missing images."""
        return "the split file"

    @classmethod
    def resolve_dataset_dir(cls, cfg):
        return locate_dataset_dir(cfg.DATASET.ROOT, cls.dataset_dir, cls.__name__)

    def load_splits(self, cfg):
        return self.read_splits(self.dataset_dir)

    @classmethod
    def splits_for_check(cls, cfg, dataset_dir):
        """The splits as training would read them, without writing anything (the data check)."""
        return cls.read_splits(dataset_dir, may_write=False)

    @classmethod
    def read_splits(cls, dataset_dir, may_write=True):
        raise NotImplementedError(f"{cls.__name__} must implement read_splits(dataset_dir, may_write)")

    def _to_datums(self, records):
        if self.verify_images:
            missing = find_missing(self.dataset_dir, records)
            if missing:
                raise DatasetError(missing_files_message(type(self).__name__, self.dataset_dir, missing,
                                                         len(records), self.split_source()))
        join = os.path.join
        return [Datum(impath=join(self.dataset_dir, r.relpath), label=r.label, classname=r.classname,
                      verify=False) for r in records]


class SplitFileDataset(BenchmarkDataset):
    """Datasets defined by a `split_zhou_<Name>.json`. Without one, `build_split` makes a new
    split (default: one folder per class under `image_dir`, 50/20/30), announced loudly."""

    image_dir = ""  # image folder under dataset_dir; split-file paths are relative to it
    split_file = ""
    ignored_folders = ()  # class-folder build only
    new_cnames = None  # class-folder build only: folder name -> class name

    @classmethod
    def split_source(cls):
        return cls.split_file

    @classmethod
    def read_splits(cls, dataset_dir, may_write=True):
        return load_or_build_split(os.path.join(dataset_dir, cls.split_file), cls.image_dir,
                                   lambda rng: cls.build_split(dataset_dir, rng), cls.__name__, may_write)

    @classmethod
    def build_split(cls, dataset_dir, rng):
        return split_class_folders(dataset_dir, cls.image_dir, rng,
                                   ignored=cls.ignored_folders, new_cnames=cls.new_cnames)
