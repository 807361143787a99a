"""Few-shot subsets (cached per shots and seed) and base/new class subsampling.

Cache: `<dataset_dir>/split_fewshot/shot_{K}-seed_{S}.json`, plain JSON with paths relative
to the dataset folder (portable, nothing executable, unlike Dassl's pickles). It stores a
fingerprint of the full train/val lists it was sampled from; a cache made from another split
file or image list is rebuilt with a message, never reused. Sampling itself is the engine's
`generate_fewshot_dataset` (Dassl's draws), so a fresh subset and a reused one are identical.
"""
import hashlib
import math
import os
import random

from dassl.utils import read_json, write_json

from .split_files import DatasetError, Record

CACHE_FORMAT = 1
FEWSHOT_DIR = "split_fewshot"
SUBSAMPLE_CHOICES = ("all", "base", "new")


def fingerprint(*record_lists):
    """sha256 over every (path, label, class name) of the lists, in order."""
    h = hashlib.sha256()
    for k, records in enumerate(record_lists):
        h.update(f"#list{k}\n".encode())
        for r in records:
            h.update(f"{r.relpath}\t{r.label}\t{r.classname}\n".encode())
    return h.hexdigest()


def cache_path(dataset_dir, num_shots, seed):
    return os.path.join(dataset_dir, FEWSHOT_DIR, f"shot_{num_shots}-seed_{seed}.json")


def _to_json(records):
    return [[r.relpath, r.label, r.classname] for r in records]


def _from_json(entries):
    return [Record(p, int(y), c) for p, y, c in entries]


def _load_cache(path, expected_fp):
    """The cached (train, val) if the file is intact and made from the same lists, else None."""
    try:
        data = read_json(path)
        if data.get("format") == CACHE_FORMAT and data.get("fingerprint") == expected_fp:
            return _from_json(data["train"]), (None if data["val"] is None else _from_json(data["val"]))
        print(f"Few-shot cache {path} was made from a different split file or image list: "
              "rebuilding it (the old subset is not reused).")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        print(f"Few-shot cache {path} is unreadable ({e}): rebuilding it.")
    return None


def sample_fewshot(dataset, train, val, num_shots, seed, subset_seed=-1):
    """(train, val) with `num_shots` per class in train and min(num_shots, 4) in val.

    `val=None` (ImageNet: val is the test set) samples and caches train only. `dataset` is
    the DatasetBase whose `generate_fewshot_dataset` draws the samples. With SEED < 0 the
    run is unseeded, so nothing is cached (a cache would freeze one random draw).
    `subset_seed` >= 0 (DATASET.FEWSHOT_SEED) takes the subset a run with SEED `subset_seed`
    trains on, and leaves this run's random streams as a cached subset would.
    """
    if num_shots < 1:
        return train, val
    if subset_seed >= 0 and subset_seed != seed:
        state = random.getstate()
        random.seed(subset_seed)  # as set_random_seed(subset_seed) leaves it before the draw
        try:
            return sample_fewshot(dataset, train, val, num_shots, subset_seed)
        finally:
            random.setstate(state)
    path = cache_path(dataset.dataset_dir, num_shots, seed)
    fp = fingerprint(train, val or [], [Record(f"shots={num_shots} seed={seed}", 0, "")])
    if seed >= 0 and os.path.isfile(path):
        cached = _load_cache(path, fp)
        if cached is not None:
            print(f"Loading preprocessed few-shot data from {path}")
            return cached
    legacy = path[:-len(".json")] + ".pkl"
    if os.path.isfile(legacy):
        print(f"Note: ignoring Dassl's pickled cache {legacy} (pickles are never loaded); sampling anew.")

    train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    if val is not None:
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
    if seed < 0:
        print("SEED < 0: the few-shot subset is random and is not cached.")
        return train, val
    data = {"format": CACHE_FORMAT, "fingerprint": fp, "num_shots": num_shots, "seed": seed,
            "train": _to_json(train), "val": None if val is None else _to_json(val)}
    try:
        write_json(data, path)
        print(f"Saving preprocessed few-shot data to {path}")
    except OSError as e:
        print(f"WARNING: could not write the few-shot cache {path} ({e}); "
              "the subset is re-drawn (identically, same seed) on every run.")
    return train, val


def check_subsample(value):
    if value not in SUBSAMPLE_CHOICES:
        raise DatasetError(f"DATASET.SUBSAMPLE_CLASSES is {value!r}; use one of {', '.join(SUBSAMPLE_CHOICES)} "
                           "(all: every class; base/new: first/second half of the sorted labels).")


def subsample_classes(*splits, subsample="all"):
    """Keep the base (first ceil(n/2) sorted labels of the first list) or new (the rest)
    classes in every list, relabelled from 0. `None` lists pass through."""
    check_subsample(subsample)
    if subsample == "all":
        return splits
    labels = sorted({r.label for r in splits[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    relabel = {y: i for i, y in enumerate(selected)}
    return tuple(None if s is None else [r._replace(label=relabel[r.label]) for r in s if r.label in relabel]
                 for s in splits)
