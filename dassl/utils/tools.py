"""Small file-system, JSON and seeding helpers (Dassl `dassl.utils.tools` API)."""
import errno
import hashlib
import json
import os
import os.path as osp
import random
import re
import sys
import tempfile

import numpy as np
import torch

from .errors import OutputDirError


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


def current_umask():
    """The process umask, read without changing it where the OS allows (Linux /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (brief, single-threaded at this point)
    os.umask(mask)
    return mask


def make_mode_follow_umask(fd):
    """Give a file made by `tempfile.mkstemp` (always 0600) the mode `open()` would have given
    it (0666 minus the umask), so files shared through a group folder stay readable."""
    os.fchmod(fd, 0o666 & ~current_umask())


def _write_error(path, error):
    return OutputDirError(f'Cannot write "{path}": {error.strerror or error}. Free disk space or make '
                          f"{osp.dirname(osp.abspath(path))} writable (or choose another output folder), then "
                          "rerun; nothing was replaced.")


WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


def _write_failure_in(exc):
    """The OSError of a full/read-only disk behind `exc`, if any (torch.save wraps it in a
    RuntimeError of its zip writer)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


_TEMP_NAME = re.compile(r"^.+\.[a-z0-9_]{8}\.tmp$")  # what atomic_write's mkstemp names look like


def remove_stale_temp_files(folder):
    """Delete the temp files of atomic writes a killed process left in `folder` (a SIGKILL
    mid-write cannot clean up); returns their paths."""
    removed = []
    if osp.isdir(folder):
        for name in sorted(os.listdir(folder)):
            path = osp.join(folder, name)
            if _TEMP_NAME.match(name) and osp.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


class atomic_write:
    """Context manager writing to a temp file in the target folder, renamed on success.

    A crash (even SIGKILL) mid-write leaves the old file intact and at most a stray
    ``.tmp`` file, never a truncated target; any failure in the process (a full disk, an
    exception in the caller) removes the temp file. The file gets the umask's mode, like
    `open()`. A full, read-only or over-quota folder raises `OutputDirError` naming the path.
    """

    def __init__(self, path, mode="wb"):
        self.path = path
        self.mode = mode
        self.tmp = None

    def __enter__(self):
        directory = osp.dirname(osp.abspath(self.path)) or "."
        try:
            fd, self.tmp = tempfile.mkstemp(prefix=osp.basename(self.path) + ".", suffix=".tmp", dir=directory)
        except OSError as e:
            if e.errno in WRITE_ERRNOS:
                raise _write_error(self.path, e) from e
            raise
        make_mode_follow_umask(fd)
        self.file = os.fdopen(fd, self.mode)
        return self.file

    def __exit__(self, exc_type, exc, tb):
        failure = exc  # the body's exception, else one from finishing the file
        try:
            if exc is None:
                self.file.flush()
                os.fsync(self.file.fileno())
            self.file.close()
            if exc is None:
                os.replace(self.tmp, self.path)
                self.tmp = None
        except OSError as finish_error:  # e.g. closing a file on a full disk flushes and fails
            failure = failure or finish_error
        finally:
            self._remove_tmp()
        if failure is None:
            return False
        cause = _write_failure_in(failure)
        if cause is not None:
            raise _write_error(self.path, cause) from failure
        if failure is exc:
            return False  # the body's own exception propagates unchanged
        raise failure

    def _remove_tmp(self):
        if self.tmp is not None:
            try:
                self.file.close()
            except OSError:
                pass
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass
            self.tmp = None


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
