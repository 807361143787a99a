"""The output tree: where every run writes (the planner) and what the aggregator reads back.

    <root>/<dataset>/<Trainer>/<cfg>_<K>shots/[<variant>/]seed<S>/   training runs; zero-shot
                                                                     runs have no seed folder
    <root>/eval/..., <root>/dg/<target>/..., <root>/xd/<target>/...  retests, DG, cross-dataset
    <root>/base2new/train_base/..., <root>/base2new/test_new/...     base-to-new

Each subtree below a prefix has the same shape, so one walker reads them all. A run folder
replaced by `FORCE=1` is renamed `<name>.replaced-<time>` and ignored from then on.
"""
import os
import os.path as osp
import re

LOG_FILE = "log.txt"
RESULT_FILE = "result.json"  # written by the engine when a run finished and was tested

EVAL_DIR = "eval"
DG_DIR = "dg"
XD_DIR = "xd"
BASE2NEW_DIR = "base2new"
TRAIN_BASE_DIR = "train_base"
TEST_NEW_DIR = "test_new"
SPECIAL_TOP_DIRS = (EVAL_DIR, DG_DIR, XD_DIR, BASE2NEW_DIR)  # folders of <root> that are not datasets

ZEROSHOT_SHOTS = 0
ARCHIVE_MARK = ".replaced-"


def parse_setting_dir(name):
    """`rn50_ep50_16shots` -> ("rn50_ep50", 16); None if the name is not of that form."""
    match = re.match(r"^(.+)_(\d+)shots$", name)
    return (match.group(1), int(match.group(2))) if match else None


def parse_seed_dir(name):
    """`seed3` -> 3; None otherwise."""
    match = re.match(r"^seed(\d+)$", name)
    return int(match.group(1)) if match else None


def run_dir(root, dataset, trainer, cfg, shots, seed=None, variant=""):
    """Folder of one run; `seed=None` for seedless (zero-shot) runs."""
    below = [variant, "" if seed is None else f"seed{seed}"]
    return osp.join(root, dataset, trainer, f"{cfg}_{shots}shots", *filter(None, below))


def has_run_files(path):
    """True if `path` is a run folder: it holds a log or a result record."""
    return osp.isfile(osp.join(path, LOG_FILE)) or osp.isfile(osp.join(path, RESULT_FILE))


def is_finished(path):
    """A run is done only once the engine wrote its result record (not because it exists)."""
    return osp.isfile(osp.join(path, RESULT_FILE))


def natural_key(name):
    """Sort key: seed2 before seed10."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def list_subdirs(path):
    """Sub-folders of `path` in natural order, without hidden ones and those `FORCE=1` archived."""
    names = [n for n in os.listdir(path) if not n.startswith(".") and ARCHIVE_MARK not in n
             and osp.isdir(osp.join(path, n))]
    return sorted(names, key=natural_key)
