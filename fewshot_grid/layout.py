"""The output tree: where every run writes, built by the planner and parsed by the aggregator.

The reference layout, extended by the trees this project adds::

    <root>/<dataset>/<Trainer>/<cfg>_<K>shots/[<variant>/]seed<S>/        training runs
    <root>/<dataset>/<ZeroshotTrainer>/<cfg>_0shots/                      zero-shot (no seed)
    <root>/eval/<dataset>/<Trainer>/<cfg>_<K>shots/[<variant>/]seed<S>/   eval-only re-tests
    <root>/dg/<target>/<Trainer>/<cfg>_<K>shots/[<variant>/]seed<S>/      DG: the model of
                                              <root>/imagenet/<Trainer>/... tested on <target>
    <root>/base2new/train_base/<dataset>/<Trainer>/<cfg>_<K>shots/[<variant>/]seed<S>/
    <root>/base2new/test_new/<dataset>/<Trainer>/<cfg>_<K>shots/[<variant>/]seed<S>/

`<variant>` is an optional setting folder (CoOp's `nctx16_cscFalse_ctpend`, TaskRes'
`enhanced_base`). Each subtree below a prefix has the same shape, so one walker reads them all.
A run folder replaced by `FORCE=1` is renamed `<name>.replaced-<time>` and ignored from then on.
"""
import os
import os.path as osp
import re

LOG_FILE = "log.txt"
RESULT_FILE = "result.json"  # written by the engine when a run finished and was tested

EVAL_DIR = "eval"
DG_DIR = "dg"
BASE2NEW_DIR = "base2new"
TRAIN_BASE_DIR = "train_base"
TEST_NEW_DIR = "test_new"
# Top-level folders of <root> that hold other trees, not datasets.
SPECIAL_TOP_DIRS = (EVAL_DIR, DG_DIR, BASE2NEW_DIR)

ZEROSHOT_SHOTS = 0

ARCHIVE_MARK = ".replaced-"

_SETTING_RE = re.compile(r"^(?P<cfg>.+)_(?P<shots>\d+)shots$")
_SEED_RE = re.compile(r"^seed(?P<seed>\d+)$")


def setting_dir_name(cfg, shots):
    return f"{cfg}_{shots}shots"


def parse_setting_dir(name):
    """`rn50_ep50_16shots` -> ("rn50_ep50", 16); None if the name is not of that form."""
    match = _SETTING_RE.match(name)
    return (match.group("cfg"), int(match.group("shots"))) if match else None


def seed_dir_name(seed):
    return f"seed{seed}"


def parse_seed_dir(name):
    """`seed3` -> 3; None otherwise."""
    match = _SEED_RE.match(name)
    return int(match.group("seed")) if match else None


def is_archived(name):
    return ARCHIVE_MARK in name


def run_dir(root, dataset, trainer, cfg, shots, seed=None, variant=""):
    """Folder of one run; `seed=None` for seedless (zero-shot) runs."""
    parts = [root, dataset, trainer, setting_dir_name(cfg, shots)]
    if variant:
        parts.append(variant)
    if seed is not None:
        parts.append(seed_dir_name(seed))
    return osp.join(*parts)


def has_run_files(path):
    """True if `path` is a run folder: it holds a log or a result record."""
    return osp.isfile(osp.join(path, LOG_FILE)) or osp.isfile(osp.join(path, RESULT_FILE))


def is_finished(path):
    """A run is done only once the engine wrote its result record (not because it exists)."""
    return osp.isfile(osp.join(path, RESULT_FILE))


def _natural_key(name):
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", name)]


def list_subdirs(path):
    """Sub-folders of `path` in natural order (seed2 before seed10), without hidden folders
    and folders archived by `FORCE=1`."""
    names = [n for n in os.listdir(path)
             if not n.startswith(".") and not is_archived(n) and osp.isdir(osp.join(path, n))]
    return sorted(names, key=_natural_key)
