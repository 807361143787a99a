"""Check which benchmark datasets under a data root are ready to use.

    python -m datasets.check --root DATA [--dataset NAME ...]

For each dataset: present or not, images per split (compared with the published split sizes),
the first missing files, and what to do. Reads exactly as training does, but writes nothing.

Exit status 1 when anything asked for is unusable: a dataset named with --dataset that is
absent, or any present dataset whose split file or annotation lists are missing or broken,
whose listed images are missing, or that has an empty split. Without --dataset, absent
datasets are only listed (1 if none at all is present). Split sizes that differ from the
published ones are reported as a note and never fail the check: a copy with a
non-official split, or a miniature test tree, still loads correctly.
"""
import argparse
import os
import sys

from dassl.data.datasets import DATASET_REGISTRY

import datasets  # noqa: F401  (registers the datasets)

from .base import find_missing, locate_dataset_dir, missing_files_message
from .split_files import DOCS, DatasetError, DatasetNotFound

# Published (train, val, test) sizes; None where a split does not exist (test-only sets).
PUBLISHED_SIZES = {
    "ImageNet": (1281167, None, 50000),
    "Caltech101": (4128, 1649, 2465),
    "OxfordPets": (2944, 736, 3669),
    "StanfordCars": (6509, 1635, 8041),
    "OxfordFlowers": (4093, 1633, 2463),
    "Food101": (50500, 20200, 30300),
    "FGVCAircraft": (3334, 3333, 3333),
    "SUN397": (15880, 3970, 19850),
    "DescribableTextures": (2820, 1128, 1692),
    "EuroSAT": (13500, 5400, 8100),
    "UCF101": (7639, 1898, 3783),
    "ImageNetV2": (None, None, 10000),
    "ImageNetSketch": (None, None, 50889),
    "ImageNetA": (None, None, 7500),
    "ImageNetR": (None, None, 30000),
}
BENCHMARKS = list(PUBLISHED_SIZES)
SPLITS = ("train", "val", "test")

OK, NOTE, FAIL, ABSENT = "OK", "OK (note)", "UNUSABLE", "NOT PRESENT"


def _fmt(n):
    return "-" if n is None else f"{n:,}"


def check_dataset(root, name, asked=True):
    """(status, lines) for one dataset; never writes to disk. An absent dataset that was not
    asked for by name gets a one-line mention."""
    cls = DATASET_REGISTRY.get(name)
    try:
        dataset_dir = locate_dataset_dir(root, cls.dataset_dir, name)
    except DatasetNotFound as e:
        return ABSENT, [str(e) if asked else f"no folder '{cls.dataset_dir}' (layout: {DOCS}, section {name})"]
    try:
        splits = cls.read_splits(dataset_dir, may_write=False)
    except DatasetError as e:
        return FAIL, [f"folder: {dataset_dir}", str(e)]
    counts = {"train": len(splits.train), "val": None if splits.val is None else len(splits.val),
              "test": len(splits.test)}
    if cls.test_only:
        counts["train"] = None
    published = dict(zip(SPLITS, PUBLISHED_SIZES[name]))
    n_classes = len({r.label for r in splits.test})
    lines = [f"folder: {dataset_dir}",
             "images: " + "  ".join(f"{s} {_fmt(counts[s])}" for s in SPLITS) + f"  ({n_classes} classes)"]
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty:
        return FAIL, lines + [f"empty split(s): {', '.join(empty)}; re-extract the dataset (layout: {DOCS})."]
    if cls.verify_images:
        records = [r for s in splits if s for r in s]
        missing = find_missing(dataset_dir, records, desc=f"Checking {name}")
        if missing:
            return FAIL, lines + [missing_files_message(name, dataset_dir, missing, len(records), cls.split_source())]
    differ = [s for s in SPLITS if counts[s] != published[s]]
    if differ:
        expected = "  ".join(f"{s} {_fmt(published[s])}" for s in SPLITS)
        lines.append(f"note: sizes differ from the published split ({expected}); results are comparable with "
                     f"published numbers only with the official split files and a complete copy (see {DOCS}).")
        return NOTE, lines
    return OK, lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m datasets.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="DATASET.ROOT: the folder holding the dataset folders")
    parser.add_argument("--dataset", nargs="+", choices=BENCHMARKS, metavar="NAME",
                        help=f"datasets to check (default: all). Names: {', '.join(BENCHMARKS)}")
    args = parser.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        print(f"DATASET.ROOT {root} does not exist or is not a folder: pass the folder that holds the "
              f"dataset folders (see {DOCS}).")
        return 1
    asked = args.dataset or BENCHMARKS
    results = {}
    for name in asked:
        status, lines = check_dataset(root, name, asked=bool(args.dataset))
        results[name] = status
        print(f"[{status}] {name}")
        for line in lines:
            print("    " + line.replace("\n", "\n    "))
    counts = {s: sum(1 for v in results.values() if v == s) for s in (OK, NOTE, FAIL, ABSENT)}
    print(f"\nChecked {len(results)} dataset(s) under {root}: {counts[OK] + counts[NOTE]} usable "
          f"({counts[NOTE]} with notes), {counts[FAIL]} unusable, {counts[ABSENT]} not present.")
    failed = counts[FAIL] > 0 or (args.dataset and counts[ABSENT] > 0) or counts[ABSENT] == len(results)
    if failed:
        print(f"Fix the datasets marked [{FAIL}]" + (f" or [{ABSENT}]" if args.dataset or counts[ABSENT] == len(results)
                                                    else "") + f" as described above (layouts: {DOCS}).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
