"""Loaders over cached features that batch like the reference image loader they replace: the
same sampler type, batch size and drop_last, one batch of features per step."""
import hashlib

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from dassl.data.samplers import build_sampler


def random_views(n_items, views, seed, epoch):
    """View index of each of `n_items` training items in `epoch` for VIEW_ORDER random: drawn
    uniformly from the V views by a generator of its own (seeded by run seed and epoch), so
    the run's random streams do not move."""
    key = int.from_bytes(hashlib.sha256(f"views/{seed}/{epoch}".encode()).digest()[:8], "little") >> 1
    return torch.randint(views, (n_items,), generator=torch.Generator().manual_seed(key))


class CachedFeatureBatches(Dataset):
    """Cached features as Dassl batch dicts (img = features); indexed by a whole batch of
    indices at once. `view` picks the view of the current epoch: one index for every item,
    or a LongTensor with one index per item."""

    def __init__(self, features, items):
        self.features = features
        self.labels = torch.tensor([item.label for item in items])
        self.domains = torch.tensor([item.domain for item in items])
        self.impaths = [item.impath for item in items]
        self.view = 0

    def __len__(self):
        return len(self.impaths)

    def __getitem__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        view = self.view if isinstance(self.view, int) else self.view[index]
        return {"img": self.features[index, view], "label": self.labels[index],
                "domain": self.domains[index], "impath": [self.impaths[i] for i in indices], "index": index}


def loader_like(reference, features, items):
    """A loader over cached features with the reference loader's sampler type, batch size
    and drop_last (one batch of features per step, as the reference yields images)."""
    dataset = CachedFeatureBatches(features, items)
    sampler = build_sampler(type(reference.sampler).__name__, data_source=dataset)
    batches = BatchSampler(sampler, batch_size=reference.batch_size, drop_last=reference.drop_last)
    return DataLoader(dataset, batch_size=None, sampler=batches, num_workers=0)
