"""Portable few-shot subset files: the exact train and few-shot val images of one (dataset, shots,
seed), as JSON Lines with a content hash, so another toolkit (or a reviewer) can rerun on the very
same images, and tables can tell runs on different subsets apart.

    {"format": "fewshot-subset/1", "dataset": "DescribableTextures", "shots": 16, "seed": 1,
     "classes_sha256": "...", "items": 784, "sha256": "..."}              <- header line
    {"split": "train", "path": "images/banded/banded_0002.jpg", "label": 0, "class": "banded"}
    ...

`sha256` covers the item lines (canonical JSON, in order), `classes_sha256` the class names in
label order; paths are relative to the dataset folder. Every run writes the subset it used to
`subset.jsonl` in its output folder and records the hash in result.json; DATASET.SUBSET_FILE
reads one back instead of drawing (it must be for the same dataset and class list).

2SFS's public splits (Farina et al., CVPR 2025; github.com/FarinaMatteo/rethinking_fewshot_vlms at
64ac143) are two files per (shots, seed) in a dataset's split_fewshot folder,
`shot_K-seed_S_train.jsonl` and `shot_K-seed_S_val.jsonl`, one Dassl Datum per line
({"_impath", "_label", "_domain", "_classname"}, absolute paths of the machine that drew them).
DATASET.SUBSET_FILE also reads such a train file (with its val sibling); each image is found here
by the longest tail of its path that names an image of the dataset. `python -m
datasets.to_2sfs SUBSET_FILE DATASET_DIR OUT_DIR` writes one of ours in that format.
"""
import hashlib
import json
import os
import re

from dassl.utils import atomic_write

from .split_files import DatasetError, Record

FORMAT = "fewshot-subset/1"
SPLITS = ("train", "val")


def _item_line(split, record):
    return json.dumps({"split": split, "path": record.relpath, "label": record.label,
                       "class": record.classname}, sort_keys=True, separators=(",", ":"))


def _sha256(lines):
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode() + b"\n")
    return h.hexdigest()


def classes_hash(classnames):
    return _sha256(list(classnames))


def subset_hash(train, val):
    """The content hash of a subset: its train then val records, in order."""
    return _sha256([_item_line("train", r) for r in train] + [_item_line("val", r) for r in val or []])


def write_subset(path, dataset, shots, seed, classnames, train, val):
    """Write the subset file atomically; returns its hash."""
    lines = [_item_line("train", r) for r in train] + [_item_line("val", r) for r in val or []]
    header = {"format": FORMAT, "dataset": dataset, "shots": shots, "seed": seed,
              "classes_sha256": classes_hash(classnames), "items": len(lines), "sha256": _sha256(lines)}
    with atomic_write(path, "w") as f:
        f.write(json.dumps(header, sort_keys=True) + "\n")
        for line in lines:
            f.write(line + "\n")
    return header["sha256"]


def read_subset(path, dataset, classnames):
    """(train, val, header) of a subset file made for `dataset` and its class list (None: any);
    any mismatch or a content that does not hash to the header's sha256 is one clear error."""
    where = f"DATASET.SUBSET_FILE {path}"
    if not os.path.isfile(path):
        raise DatasetError(f"{where} does not exist; point it at a subset file (subset.jsonl of a run folder).")
    try:
        with open(path) as f:
            header, *lines = [line.rstrip("\n") for line in f if line.strip()]
        header = json.loads(header)
        items = [json.loads(line) for line in lines]
    except (ValueError, OSError) as e:
        raise DatasetError(f"{where} is not a JSON Lines subset file ({e}).") from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DatasetError(f"{where}: the first line is not a {FORMAT} header.")
    if header.get("dataset") != dataset:
        raise DatasetError(f"{where} is a subset of {header.get('dataset')}, not {dataset}; use the subset "
                           f"file of a {dataset} run.")
    if classnames is not None and header.get("classes_sha256") != classes_hash(classnames):
        raise DatasetError(f"{where} was made for another class list of {dataset} (a different split file "
                           "or class names); it cannot select the same images here.")
    canonical = [_item_line(item.get("split"), Record(item.get("path"), item.get("label"), item.get("class")))
                 for item in items]
    if _sha256(canonical) != header.get("sha256") or len(items) != header.get("items"):
        raise DatasetError(f"{where}: its content does not match the hash in its header (edited or "
                           "truncated); restore the original file.")
    records = {split: [Record(i["path"], int(i["label"]), i["class"]) for i in items if i["split"] == split]
               for split in SPLITS}
    return records["train"], records["val"], header


TWO_SFS_TRAIN = re.compile(r"^shot_(\d+)-seed_(\d+)_train\.jsonl$")


def is_2sfs_file(path):
    return bool(TWO_SFS_TRAIN.match(os.path.basename(path)))


def _2sfs_records(path, split, by_relpath):
    """The records of a 2SFS split file, matched to `by_relpath` (relpath -> Record)."""
    try:
        with open(path) as f:
            items = [json.loads(line) for line in f if line.strip()]
    except (ValueError, OSError) as e:
        raise DatasetError(f"DATASET.SUBSET_FILE: {path} is not a 2SFS split file ({e}).") from e
    records = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict) or not {"_impath", "_label"} <= set(item):
            raise DatasetError(f"DATASET.SUBSET_FILE: line {n} of {path} is not a 2SFS item "
                               '({"_impath", "_label", "_domain", "_classname"}).')
        parts = item["_impath"].replace("\\", "/").split("/")
        match = next((by_relpath["/".join(parts[i:])] for i in range(len(parts))
                      if "/".join(parts[i:]) in by_relpath), None)
        if match is None:
            raise DatasetError(f"DATASET.SUBSET_FILE: {path} ({split}) lists {item['_impath']} (line {n}), "
                               "which is not an image of this dataset's splits here; it was drawn from "
                               "another split file or dataset.")
        if match.label != item["_label"]:
            raise DatasetError(f"DATASET.SUBSET_FILE: {path} gives {match.relpath} label {item['_label']}, "
                               f"here it is {match.label} ({match.classname}); the class lists differ.")
        records.append(match)
    return records


def read_2sfs(path, known, read_val=True):
    """(train, val, header) of a 2SFS split pair; `known`: every record of the dataset's train and
    val splits; `read_val` False for a dataset without a val split (its 2SFS val is drawn from
    test, which no selection may read). The header holds the file name's shots and seed."""
    shots, seed = (int(x) for x in TWO_SFS_TRAIN.match(os.path.basename(path)).groups())
    if not os.path.isfile(path):
        raise DatasetError(f"DATASET.SUBSET_FILE {path} does not exist; point it at a 2SFS "
                           "shot_K-seed_S_train.jsonl file.")
    by_relpath = {r.relpath: r for r in known}
    train = _2sfs_records(path, "train", by_relpath)
    val_path = path[:-len("_train.jsonl")] + "_val.jsonl"
    val = _2sfs_records(val_path, "val", by_relpath) if read_val and os.path.isfile(val_path) else []
    return train, val, {"format": "2sfs", "shots": shots, "seed": seed, "sha256": subset_hash(train, val)}


def write_2sfs(out_dir, dataset_dir, shots, seed, train, val):
    """Write a subset as 2SFS's split pair (absolute paths under `dataset_dir`); returns the paths."""
    paths = []
    for split, records in (("train", train), ("val", val)):
        path = os.path.join(out_dir, f"shot_{shots}-seed_{seed}_{split}.jsonl")
        with atomic_write(path, "w") as f:
            for r in records:
                f.write(json.dumps({"_impath": os.path.join(os.path.abspath(dataset_dir), r.relpath),
                                    "_label": r.label, "_domain": 0, "_classname": r.classname}) + "\n")
        paths.append(path)
    return paths
