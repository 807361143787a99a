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
"""
import hashlib
import json
import os

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
    """(train, val, header) of a subset file made for `dataset` and its class list; any mismatch
    or a content that does not hash to the header's sha256 is one clear error."""
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
    if header.get("classes_sha256") != classes_hash(classnames):
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
