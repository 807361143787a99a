"""Training loader whose workers stay alive across epochs yet draw, epoch by epoch, the same
random numbers as the workers a fresh `DataLoader` iterator would start.

How a fresh iterator seeds its workers (torch 2.x, `torch/utils/data/dataloader.py` and
`_utils/worker.py`), which this reproduces:
- `_BaseDataLoaderIter.__init__` draws `base_seed` with
  `torch.empty((), dtype=torch.int64).random_(generator=loader.generator)`: one draw from the
  main process's default generator (no generator is passed) at every `iter(loader)`, also with
  num_workers=0, where the value is unused.
- The sampler draws afterwards, on the first index (RandomSampler without a generator draws
  its own seed from the same default generator); batches go to workers round-robin from
  worker 0, each worker working through its queue in order.
- Worker `i` seeds `random` and `torch` with `base_seed + i` and NumPy with
  `_generate_state(base_seed, i)` before its first batch.
With `persistent_workers=True`, torch draws `base_seed` only once, when the workers start, and
never reseeds them. Here the loader draws the epoch's `base_seed` from the default generator
itself at each `iter()` (the built-in first draw goes to a private generator instead), tags
every batch with it, and a worker reseeds exactly as above when it meets the first batch of a
new epoch. Sampler draws, batch-to-worker assignment (reset to worker 0 every epoch) and
per-worker order are torch's own. With num_workers=0 there are no workers and the plain loader
already is the reference.
"""
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info
from torch.utils.data._utils.worker import _generate_state


class EpochBatch(list):
    """Indices of one batch plus the token (iteration number, base seed) of its epoch."""

    token = None


class _TaggedBatches:
    """The loader's batch sampler, each batch tagged with the current epoch's token."""

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self.token = None

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        token = self.token
        for indices in self.batch_sampler:
            batch = EpochBatch(indices)
            batch.token = token
            yield batch


_seen_token = None  # per worker process: the epoch this worker was last seeded for


def reseed_like_fresh_worker(indices):
    """In a loader worker: on the first batch of a new epoch, seed `random`, `torch` and
    NumPy as a worker started for this epoch would have been seeded."""
    global _seen_token
    token = getattr(indices, "token", None)
    if token is None or token == _seen_token:
        return
    info = get_worker_info()
    if info is None:
        return
    base_seed = token[1]
    random.seed(base_seed + info.id)
    torch.manual_seed(base_seed + info.id)
    np.random.seed(_generate_state(base_seed, info.id))
    _seen_token = token


class ReseededLoader(DataLoader):
    """`DataLoader` with persistent, per-epoch reseeded workers (`persistent` and
    num_workers > 0; the dataset must call `reseed_like_fresh_worker` on each batch, as
    `DatasetWrapper.__getitems__` does) and an optional decoded-image `store`, filled in
    the main process before the first workers start."""

    def __init__(self, dataset, *, store=None, persistent=True, **kwargs):
        reseed = persistent and kwargs.get("num_workers", 0) > 0 and kwargs.get("batch_size", 1) is not None
        if reseed:
            # The built-in draw of the first iterator must not move the main stream: it gets its own.
            kwargs.update(persistent_workers=True, generator=torch.Generator())
        super().__init__(dataset, **kwargs)
        self.store = store
        self.reseeds = reseed
        self._tagged = _TaggedBatches(self.batch_sampler) if reseed else None
        self._iterations = 0

    @property
    def _index_sampler(self):
        tagged = self.__dict__.get("_tagged")
        return tagged if tagged is not None else super()._index_sampler

    def __iter__(self):
        if self.store is not None:
            self.store.fill()
        if self._tagged is not None:
            # The draw a fresh iterator makes, at the same point of the main stream.
            base_seed = torch.empty((), dtype=torch.int64).random_().item()
            self._iterations += 1
            self._tagged.token = (self._iterations, base_seed)
        return super().__iter__()
