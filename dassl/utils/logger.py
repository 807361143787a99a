"""Tee stdout to OUTPUT_DIR/log.txt; a later run never overwrites an earlier log."""
import os
import os.path as osp
import sys
import time

from .tools import mkdir_if_missing


class Logger:
    """Write everything printed to the console and to a file (Dassl's `Logger`)."""

    def __init__(self, fpath=None):
        self.console = sys.stdout
        self.file = None
        if fpath is not None:
            mkdir_if_missing(osp.dirname(osp.abspath(fpath)))
            # Line-buffered: a run killed from outside (a launcher, SIGKILL) keeps every line it printed.
            self.file = open(fpath, "w", buffering=1)

    def __del__(self):
        self.close()

    def write(self, msg):
        self.console.write(msg)
        if self.file is not None:
            self.file.write(msg)

    def flush(self):
        self.console.flush()
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def isatty(self):
        return False

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


def log_path_for(output):
    """`log.txt` in `output` (or `output` itself if it names a .txt/.log file); if that file
    exists, a new `log.txt-YYYY-MM-DD-HH-MM-SS` name so the earlier log is kept."""
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        base = fpath + time.strftime("-%Y-%m-%d-%H-%M-%S")
        fpath, n = base, 1
        while osp.exists(fpath):
            fpath, n = f"{base}-{n}", n + 1
    return fpath


def setup_logger(output=None):
    if output is None:
        return
    if isinstance(sys.stdout, Logger):  # a second call in one process: close the old file
        old = sys.stdout
        sys.stdout = old.console
        old.close()
    sys.stdout = Logger(log_path_for(output))
