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
    """Indices of one batch plus the token (iteration number, base seed) of its epoch; an
    empty one is padding (realigns the round-robin to worker 0), skipped by the loader."""

    token = None


class _Plan:
    """One epoch: its token, its batches, and the dispatch position of its first batch."""

    def __init__(self, token, batches, start):
        self.token, self.batches, self.start = token, batches, start


class _EpochStream:
    """The endless task list one persistent torch iterator works through: epoch after epoch,
    each starting at a multiple of the worker count (so at worker 0, as a fresh iterator's
    epoch does), padding in between. When an epoch's batches are all handed out, the next
    epoch is planned from a prediction of the main stream's next draws, so the workers can
    start on it while the current epoch trains; `ReseededLoader.__iter__` then makes the real
    draws and, if they differ (something drew in between), replaces the plan."""

    def __init__(self, batch_sampler, workers):
        self.batch_sampler, self.workers = batch_sampler, workers
        self.current = None
        self.dispatched = 0  # tasks handed to torch so far
        self.iterations = 0

    def __len__(self):
        return len(self.batch_sampler)

    def next_start(self):
        return -(-self.dispatched // self.workers) * self.workers

    def draw(self):
        """The draws a fresh iterator makes from the main stream: base seed, then the sampler's."""
        base_seed = torch.empty((), dtype=torch.int64).random_().item()
        return base_seed, [list(b) for b in self.batch_sampler]

    def plan(self, base_seed, batches):
        self.iterations += 1
        self.current = _Plan((self.iterations, base_seed), batches, self.next_start())
        return self.current

    def predict(self):
        with torch.random.fork_rng(devices=[]):
            return self.plan(*self.draw())

    def __iter__(self):
        while True:
            plan = self.current
            while self.dispatched < plan.start:
                self.dispatched += 1
                yield EpochBatch()
            k = 0
            while self.current is plan and k < len(plan.batches):
                batch = EpochBatch(plan.batches[k])
                batch.token = plan.token
                k += 1
                self.dispatched += 1
                yield batch
            if self.current is plan:
                self.predict()


class ReseededLoader(DataLoader):
    """`DataLoader` with persistent, per-epoch reseeded workers (`persistent` and
    num_workers > 0; the dataset must call `reseed_like_fresh_worker` on each batch, as
    `DatasetWrapper.__getitems__` does) and an optional decoded-image `store`, filled in
    the main process before the first workers start.

    One torch iterator serves every epoch (`_EpochStream`): the workers start on the next
    epoch's first batches while the current one trains, when its draws were predicted right."""

    def __init__(self, dataset, *, store=None, persistent=True, **kwargs):
        reseed = persistent and kwargs.get("num_workers", 0) > 0 and kwargs.get("batch_size", 1) is not None
        if reseed:
            # The built-in draw of the first iterator must not move the main stream: it gets its own.
            kwargs.update(persistent_workers=True, generator=torch.Generator())
        super().__init__(dataset, **kwargs)
        self.store = store
        self.reseeds = reseed
        self._stream = _EpochStream(self.batch_sampler, self.num_workers) if reseed else None
        self._torch_iter = None
        self._consumed = 0  # results taken from the torch iterator
        self.predicted_epochs = 0  # epochs whose prefetched batches were used (benchmarks read it)

    @property
    def _index_sampler(self):
        stream = self.__dict__.get("_stream")
        return stream if stream is not None else super()._index_sampler

    def __iter__(self):
        if self.store is not None:
            self.store.fill()
        if self._stream is None:
            return super().__iter__()
        stream = self._stream
        # The draws a fresh iterator makes, at the same point of the main stream.
        base_seed, batches = stream.draw()
        planned = stream.current
        if planned is not None and planned.token[1] == base_seed and planned.batches == batches:
            self.predicted_epochs += 1
        else:  # no prediction yet, or a wrong one: hand out this epoch from the next aligned slot
            planned = stream.plan(base_seed, batches)
        if self._torch_iter is None:
            self._torch_iter = super().__iter__()
        return self._epoch(planned)

    def _epoch(self, plan):
        while self._consumed < plan.start:  # padding, or batches of a plan that was replaced
            next(self._torch_iter)
            self._consumed += 1
        for _ in range(len(plan.batches)):
            batch = next(self._torch_iter)
            self._consumed += 1
            yield batch


_seen_token = None  # per worker process: the epoch this worker was last seeded for


def reseed_like_fresh_worker(indices):
    """In a loader worker: on the first batch of a new epoch, seed `random`, `torch` and
    NumPy as a worker started for this epoch would have been seeded."""
    global _seen_token
    token = getattr(indices, "token", None)
    if isinstance(indices, EpochBatch) and not indices:
        return
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
