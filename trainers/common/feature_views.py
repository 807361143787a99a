"""How the fast pipeline's training views are drawn: each view under a seed of its own (from the
image's content, the view index and optionally the run seed), without moving any random stream
of the run, and the transform description that keys them."""
import contextlib
import hashlib
import random

import numpy as np
import torch
from torch.utils.data import Dataset

from dassl.data.data_manager import read_image


def describe_transform(transform):
    """A text that changes whenever the transform's settings change.

    torchvision transforms print all their settings; objects without their own `__repr__`
    (which would print a memory address, a new one in every process) print their fields.
    """
    if transform is None:
        return "None"
    if hasattr(transform, "transforms"):  # Compose / RandomApply / ...
        inner = ", ".join(describe_transform(t) for t in transform.transforms)
        extra = {k: v for k, v in vars(transform).items() if k != "transforms"}
        return f"{type(transform).__name__}([{inner}]{', ' + repr(sorted(extra.items())) if extra else ''})"
    if type(transform).__repr__ is object.__repr__:
        fields = sorted((k, repr(v)) for k, v in vars(transform).items())
        return f"{type(transform).__module__}.{type(transform).__qualname__}({fields})"
    return repr(transform)


def view_seed(image_digest, view, run_seed=None):
    """The RNG seed of view `view` of the image whose content sha256 is `image_digest`: the same
    in every run, or (with `run_seed`) drawn anew for each run seed."""
    text = f"{image_digest}/view{view}" if run_seed is None else f"{image_digest}/seed{run_seed}/view{view}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1



@contextlib.contextmanager
def preserved_rng():
    """Run a block without moving any random stream a training run draws from (torch on the
    CPU and every CUDA device, Python's `random`, NumPy): a run that builds the cache then
    trains exactly like a run that finds it built."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


class SeededViews(Dataset):
    """Item k = view k % V of image k // V, transformed under that view's own seed."""

    def __init__(self, paths, digests, transform, views, run_seed=None):
        self.paths, self.digests, self.transform, self.views = paths, digests, transform, views
        self.run_seed = run_seed

    def __len__(self):
        return len(self.paths) * self.views

    def __getitem__(self, k):
        i, v = divmod(k, self.views)
        image = read_image(self.paths[i])
        with torch.random.fork_rng(devices=[]):  # the run's own random stream is left untouched
            torch.manual_seed(view_seed(self.digests[i], v, self.run_seed))
            return self.transform(image)
