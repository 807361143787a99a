"""The exact fast pipeline (persistent loader workers reseeded every epoch, images from a
decoded-image store) yields, epoch by epoch, the tensors of the reference pipeline (workers
started afresh at every epoch, every image decoded from its file), and so trains the same run.
"""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from dassl.config import get_cfg_default
from dassl.data.data_manager import build_data_loader, image_store
from dassl.data.datasets import Datum
from dassl.data.transforms import build_transform

TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]


def noise_items(folder, n=13, size=(23, 17)):
    """Items of random-noise JPEGs/PNGs of odd sizes: any other crop or flip shows in the pixels."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        path = folder / f"img{i}.{'png' if i % 3 == 0 else 'jpg'}"
        pixels = rng.integers(0, 256, size=(size[0] + i, size[1] + 2 * i, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        items.append(Datum(impath=str(path), label=i % 2, classname=f"c{i % 2}"))
    return items


def loader_cfg(workers, exact, store_mode="auto", root=""):
    cfg = get_cfg_default()
    cfg.INPUT.SIZE = (12, 12)
    cfg.INPUT.TRANSFORMS = TRANSFORMS
    cfg.DATALOADER.NUM_WORKERS = workers
    cfg.DATALOADER.PERSISTENT_WORKERS = exact
    cfg.DATALOADER.IMAGE_STORE.MODE = store_mode if exact else "off"
    cfg.DATALOADER.IMAGE_STORE.ROOT = root
    cfg.USE_CUDA = False
    return cfg


def make_loader(cfg, items, batch_size=2):
    return build_data_loader(cfg, "RandomSampler", items, batch_size=batch_size,
                             tfm=build_transform(cfg, is_train=True), is_train=True,
                             store=image_store(cfg, items))


def epochs_of(loader, n_epochs=3, draws_between=True):
    """Every batch of `n_epochs` epochs; with `draws_between`, main-process draws between epochs
    (the persistent loader's prediction of the next epoch is then wrong and replaced)."""
    torch.manual_seed(0)
    epochs = []
    for _ in range(n_epochs):
        epochs.append([(batch["img"].clone(), batch["index"].clone()) for batch in loader])
        if draws_between:
            torch.rand(5)
    return epochs, torch.rand(1).item()


def assert_same_epochs(a, b):
    (epochs_a, after_a), (epochs_b, after_b) = a, b
    assert len(epochs_a) == len(epochs_b)
    for batches_a, batches_b in zip(epochs_a, epochs_b):
        assert len(batches_a) == len(batches_b)
        for (img_a, idx_a), (img_b, idx_b) in zip(batches_a, batches_b):
            assert torch.equal(idx_a, idx_b)
            assert torch.equal(img_a, img_b)
    assert after_a == after_b  # the main stream moved exactly as much


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("store_mode", ["memory", "disk", "off"])
@pytest.mark.parametrize("draws_between", [False, True])
def test_exact_loader_yields_the_reference_tensors_every_epoch(tmp_path, workers, store_mode, draws_between):
    items = noise_items(tmp_path)
    reference = make_loader(loader_cfg(workers, exact=False), items)
    exact = make_loader(loader_cfg(workers, exact=True, store_mode=store_mode, root=str(tmp_path / "store")), items)
    assert type(reference) is DataLoader
    assert_same_epochs(epochs_of(reference, draws_between=draws_between),
                       epochs_of(exact, draws_between=draws_between))
    if workers:  # the next epoch was prepared during the current one exactly when nothing drew in between
        assert exact.predicted_epochs == (0 if draws_between else 2)
    if store_mode != "off":
        assert exact.store.used == store_mode
    if workers:
        first = [w.pid for w in exact._torch_iter._workers]
        list(exact)
        assert [w.pid for w in exact._torch_iter._workers] == first  # the same workers all along


def test_plain_persistent_workers_would_change_the_augmentations(tmp_path):
    # Why the reseeding exists: torch's own persistent workers keep their stream across epochs.
    items = noise_items(tmp_path)
    cfg = loader_cfg(2, exact=False)
    plain = DataLoader(make_loader(cfg, items).dataset, batch_size=2, sampler=torch.utils.data.RandomSampler(items),
                       num_workers=2, drop_last=True, persistent_workers=True)
    reference, persistent = epochs_of(make_loader(cfg, items)), epochs_of(plain)
    assert not all(torch.equal(a[0], b[0]) for ea, eb in zip(reference[0][1:], persistent[0][1:])
                   for a, b in zip(ea, eb))
