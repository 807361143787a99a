"""Small file-system, JSON and seeding helpers (Dassl `dassl.utils.tools` API)."""
import hashlib
import json
import os
import os.path as osp
import random
import sys
import tempfile

import numpy as np
import torch


def mkdir_if_missing(dirname):
    os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath):
    isfile = osp.isfile(fpath)
    if not isfile:
        print(f'Warning: no file found at "{fpath}"', file=sys.stderr)
    return isfile


def read_json(fpath):
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj, fpath):
    """Write JSON (indent 4) atomically: readers never see a half-written file."""
    mkdir_if_missing(osp.dirname(osp.abspath(fpath)))
    with atomic_write(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


class atomic_write:
    """Context manager writing to a temp file in the target folder, renamed on success.

    A crash (even SIGKILL) mid-write leaves the old file intact and at most a stray
    ``.tmp`` file, never a truncated target.
    """

    def __init__(self, path, mode="wb"):
        self.path = path
        self.mode = mode

    def __enter__(self):
        directory = osp.dirname(osp.abspath(self.path)) or "."
        fd, self.tmp = tempfile.mkstemp(prefix=osp.basename(self.path) + ".", suffix=".tmp", dir=directory)
        self.file = os.fdopen(fd, self.mode)
        return self.file

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.file.close()
            os.unlink(self.tmp)
            return False
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.tmp, self.path)
        return False


def file_sha256(path):
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def set_random_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def listdir_nohidden(path, sort=False):
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items
