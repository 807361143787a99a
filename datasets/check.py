"""Check which datasets under a data root are ready to use.

    python -m datasets.check --root DATA [--dataset NAME ...] [--dataset-config-file F] [KEY VALUE ...]

Covers every registered dataset: the benchmarks, DemoShapes and your own ImageFolder (given by
`--dataset-config-file configs/datasets/image_folder.yaml DATASET.IMAGE_FOLDER.DIR my_images`,
or just `DATASET.IMAGE_FOLDER.DIR my_images`). For each dataset: present or not, images per
split (compared with the published split sizes), labels and class names (in range, one name
per label), and every listed image opened and decoded as training would (`--files-only`
only checks that the files exist). Reads exactly as training does, but writes nothing.

Exit status 1 when anything asked for is unusable: a dataset named with --dataset (or by
DATASET.NAME in a config) that is absent, any present dataset whose split file or annotation
lists are missing or broken, whose images are missing or do not decode, or that has an empty
split; and when no dataset at all is usable. Without --dataset, absent datasets are only
listed. Split sizes that differ from the published ones are a note and never fail the check.
Exit status 2 for a wrong command line (a root that does not exist, an unknown config key).
"""
import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from dassl.config import get_cfg_default, merge_from_file, merge_from_list
from dassl.data.data_manager import read_image
from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils.errors import UserError, run_cli

import datasets  # noqa: F401  (registers the datasets)

from .base import find_missing, missing_files_message
from .split_files import DOCS, DatasetError, DatasetNotFound, check_labels

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
DECODE_THREADS = 4  # PIL decodes outside the GIL
MAX_LISTED = 5

OK, NOTE, FAIL, ABSENT = "OK", "OK (note)", "UNUSABLE", "NOT PRESENT"


def all_dataset_names():
    """The benchmarks first (in table order), then every other registered dataset this check can
    read (a Dassl-style dataset from a plugin describes no layout: see unchecked_dataset_names)."""
    return BENCHMARKS + [n for n in DATASET_REGISTRY.registered_names()
                         if n not in PUBLISHED_SIZES and hasattr(DATASET_REGISTRY.get(n), "splits_for_check")]


def unchecked_dataset_names():
    return [n for n in DATASET_REGISTRY.registered_names() if n not in all_dataset_names()]


def undecodable(dataset_dir, records, desc):
    """(record, reason) for every image that does not open and decode, with a progress bar."""
    def decode(record):
        try:
            read_image(os.path.join(dataset_dir, record.relpath))
            return None
        except OSError as e:
            return record, str(e.__cause__ or e)

    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        results = list(tqdm(pool.map(decode, records), total=len(records), desc=desc, unit="img",
                            mininterval=1.0, file=sys.stderr))
    return [r for r in results if r is not None]


def _fmt(n):
    return "-" if n is None else f"{n:,}"


def check_dataset(cfg, name, asked=True, decode=True):
    """(status, lines) for one dataset; never writes to disk. An absent dataset that was not
    asked for by name gets a one-line mention."""
    cls = DATASET_REGISTRY.get(name)
    try:
        dataset_dir = cls.resolve_dataset_dir(cfg)
    except DatasetNotFound as e:
        short = (f"no folder '{cls.dataset_dir}' (layout: {DOCS}, section {name})" if getattr(cls, "dataset_dir", "")
                 else str(e))
        return ABSENT, [str(e) if asked else short]
    try:
        splits = cls.splits_for_check(cfg, dataset_dir)
        if not cls.test_only:
            check_labels(splits, f"{name} ({cls.split_source()})")
    except DatasetError as e:
        return FAIL, [f"folder: {dataset_dir}", str(e)]
    counts = {"train": len(splits.train), "val": None if splits.val is None else len(splits.val),
              "test": len(splits.test)}
    if cls.test_only:
        counts["train"] = None
    published = dict(zip(SPLITS, PUBLISHED_SIZES.get(name, (None, None, None))))
    n_classes = len({r.label for r in splits.test})
    lines = [f"folder: {dataset_dir}",
             "images: " + "  ".join(f"{s} {_fmt(counts[s])}" for s in SPLITS) + f"  ({n_classes} classes)"]
    empty = [s for s in SPLITS if counts[s] == 0]
    if empty:
        return FAIL, lines + [f"empty split(s): {', '.join(empty)}; re-extract the dataset (layout: {DOCS})."]
    records = list({r.relpath: r for s in splits if s for r in s}.values())
    if cls.verify_images or decode:
        missing = find_missing(dataset_dir, records, desc=f"Checking {name}")
        if missing:
            return FAIL, lines + [missing_files_message(name, dataset_dir, missing, len(records), cls.split_source())]
    if decode:
        bad = undecodable(dataset_dir, records, desc=f"Decoding {name}")
        if bad:
            shown = "\n  ".join(f"{os.path.join(dataset_dir, r.relpath)}: {why}" for r, why in bad[:MAX_LISTED])
            return FAIL, lines + [f"{len(bad)} of {len(records)} images do not decode, first:\n  {shown}\n"
                                  "Re-download these files (or remove them and their split-file entries)."]
    if name not in PUBLISHED_SIZES:
        return OK, lines
    differ = [s for s in SPLITS if counts[s] != published[s]]
    if differ:
        expected = "  ".join(f"{s} {_fmt(published[s])}" for s in SPLITS)
        lines.append(f"note: sizes differ from the published split ({expected}); results are comparable with "
                     f"published numbers only with the official split files and a complete copy (see {DOCS}).")
        return NOTE, lines
    return OK, lines


def build_cfg(args):
    from trainers.config import extend_cfg  # the dataset keys (ImageFolder's) live with the method keys

    cfg = get_cfg_default()
    extend_cfg(cfg)
    if args.dataset_config_file:
        merge_from_file(cfg, args.dataset_config_file)
    merge_from_list(cfg, args.opts)
    cfg.DATASET.ROOT = args.root
    return cfg


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m datasets.check", description=__doc__.split("\n\n")[0])
    names = all_dataset_names()
    parser.add_argument("--root", required=True, help="DATASET.ROOT: the folder holding the dataset folders")
    parser.add_argument("--dataset", nargs="+", choices=names, metavar="NAME",
                        help=f"datasets to check (default: all). Names: {', '.join(names)}")
    parser.add_argument("--dataset-config-file", default="", help="a configs/datasets/<name>.yaml: checks that dataset")
    parser.add_argument("--files-only", action="store_true", help="check that images exist, do not decode them")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides, e.g. "
                        "DATASET.IMAGE_FOLDER.DIR my_images")
    args = parser.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        raise UserError(f"--root {root} does not exist or is not a folder: pass the folder that holds the "
                        f"dataset folders (see {DOCS}).")
    args.root = root
    cfg = build_cfg(args)
    asked = list(args.dataset or [])
    if cfg.DATASET.NAME and cfg.DATASET.NAME not in asked:
        if cfg.DATASET.NAME not in DATASET_REGISTRY:
            raise UserError(f'DATASET.NAME "{cfg.DATASET.NAME}" is not a registered dataset; known: {", ".join(names)}.')
        asked.append(cfg.DATASET.NAME)
    if not asked and cfg.DATASET.IMAGE_FOLDER.DIR:
        asked = ["ImageFolder"]
    results = {}
    for name in asked or names:
        status, lines = check_dataset(cfg, name, asked=bool(asked), decode=not args.files_only)
        results[name] = status
        print(f"[{status}] {name}")
        for line in lines:
            print("    " + line.replace("\n", "\n    "))
    if not asked and unchecked_dataset_names():
        print(f"Not checked (Dassl-style datasets that describe no layout): {', '.join(unchecked_dataset_names())}")
    counts = {s: sum(1 for v in results.values() if v == s) for s in (OK, NOTE, FAIL, ABSENT)}
    usable = counts[OK] + counts[NOTE]
    print(f"\nChecked {len(results)} dataset(s) under {root}: {usable} usable "
          f"({counts[NOTE]} with notes), {counts[FAIL]} unusable, {counts[ABSENT]} not present.")
    failed = counts[FAIL] > 0 or (asked and counts[ABSENT] > 0) or usable == 0
    if failed:
        print(f"Fix the datasets marked [{FAIL}]" + (f" or [{ABSENT}]" if asked or usable == 0 else "") +
              f" as described above (layouts: {DOCS}).")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
