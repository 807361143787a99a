"""`DataManager` and `DatasetWrapper` (Dassl API): dataset -> transforms -> loaders."""
import os.path as osp

import torch
import torchvision.transforms as T
from tabulate import tabulate
from torch.utils.data import Dataset as TorchDataset

from dassl.utils.errors import UserError

from .datasets import build_dataset
from .image_store import DecodedImages, UnreadableImage, read_image  # noqa: F401 (re-exported)
from .reseeded_loader import ReseededLoader, reseed_like_fresh_worker
from .samplers import build_sampler
from .transforms import INTERPOLATION_MODES, build_transform


class ImageReadError(UserError):
    """An image a loader could not read, named with the split that lists it. Built from one
    message string, so a DataLoader worker re-raises it with its type (see run_cli)."""


def split_file_of(dataset):
    """The file that lists the dataset's images (its path when it is one file), for messages."""
    source = dataset.split_source() if hasattr(dataset, "split_source") else "the split file"
    path = osp.join(getattr(dataset, "dataset_dir", ""), source)
    return path if osp.isfile(path) else source


def name_split(loader, split, dataset):
    """Tell `loader`'s wrapper which split it reads and which file lists it (for messages)."""
    wrapper = getattr(loader, "dataset", None)
    if isinstance(wrapper, DatasetWrapper):
        wrapper.split, wrapper.listed_in = split, split_file_of(dataset)
    return loader


def build_data_loader(cfg, sampler_type="SequentialSampler", data_source=None, batch_size=64,
                      n_domain=0, n_ins=2, tfm=None, is_train=True, dataset_wrapper=None, exact=None, store=None):
    """The loader of `data_source`. `exact` (default: `is_train`): the exact fast pipeline, i.e.
    persistent workers reseeded every epoch as fresh ones (DATALOADER.PERSISTENT_WORKERS) and
    images from a decoded-image `store` (DATALOADER.IMAGE_STORE); the same tensors as the plain
    loader, epoch by epoch. Otherwise the plain loader (workers restarted at every iteration)."""
    sampler = build_sampler(sampler_type, cfg=cfg, data_source=data_source, batch_size=batch_size,
                            n_domain=n_domain, n_ins=n_ins)
    wrapper = dataset_wrapper or DatasetWrapper
    dataset = wrapper(cfg, data_source, transform=tfm, is_train=is_train)
    settings = dict(batch_size=batch_size, sampler=sampler, num_workers=cfg.DATALOADER.NUM_WORKERS,
                    drop_last=is_train and len(data_source) >= batch_size,
                    pin_memory=(torch.cuda.is_available() and cfg.USE_CUDA))
    exact = (is_train if exact is None else exact) and isinstance(dataset, DatasetWrapper)
    if not exact or (store is None and not cfg.DATALOADER.PERSISTENT_WORKERS):
        return torch.utils.data.DataLoader(dataset, **settings)
    dataset.store = store
    return ReseededLoader(dataset, store=store, persistent=cfg.DATALOADER.PERSISTENT_WORKERS, **settings)


def image_store(cfg, data_source, dataset=None):
    """The decoded-image store of `data_source` as DATALOADER.IMAGE_STORE sets it (None: off)."""
    node = cfg.DATALOADER.IMAGE_STORE
    if node.MODE == "off" or not data_source:
        return None
    split_file = split_file_of(dataset) if dataset is not None else "the split file"

    def describe(i):
        item = data_source[i]
        return f'the training image of class "{item.classname}" (label {item.label}) listed in {split_file}'
    return DecodedImages([item.impath for item in data_source], node.MODE, node.ROOT, node.MEMORY_MB, describe)


class DataManager:
    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)
        tfm_train = build_transform(cfg, is_train=True) if custom_tfm_train is None else custom_tfm_train
        tfm_test = build_transform(cfg, is_train=False) if custom_tfm_test is None else custom_tfm_test

        self.train_loader_x = None
        # Decoded once, used by every loader over train_x (the training loader, Tip-Adapter's passes).
        self.train_store = image_store(cfg, dataset.train_x, dataset)
        if dataset.train_x:
            self.train_loader_x = build_data_loader(
                cfg, sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER, data_source=dataset.train_x,
                batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE, n_domain=cfg.DATALOADER.TRAIN_X.N_DOMAIN,
                n_ins=cfg.DATALOADER.TRAIN_X.N_INS, tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper,
                store=self.train_store)
        self.train_loader_u = None
        if dataset.train_u:
            u = cfg.DATALOADER.TRAIN_X if cfg.DATALOADER.TRAIN_U.SAME_AS_X else cfg.DATALOADER.TRAIN_U
            self.train_loader_u = build_data_loader(
                cfg, sampler_type=u.SAMPLER, data_source=dataset.train_u, batch_size=u.BATCH_SIZE,
                n_domain=u.N_DOMAIN, n_ins=u.N_INS, tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper,
                store=image_store(cfg, dataset.train_u, dataset))
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(
                cfg, sampler_type=cfg.DATALOADER.TEST.SAMPLER, data_source=dataset.val,
                batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=tfm_test, is_train=False,
                dataset_wrapper=dataset_wrapper)
        # Built on first use: a sealed test split (dassl/engine/protocol.py) is not read before then.
        self._test_loader = None
        self._test_loader_args = dict(
            sampler_type=cfg.DATALOADER.TEST.SAMPLER, batch_size=cfg.DATALOADER.TEST.BATCH_SIZE,
            tfm=tfm_test, is_train=False, dataset_wrapper=dataset_wrapper)
        self._cfg = cfg

        for loader, split in ((self.train_loader_x, "train"), (self.train_loader_u, "train"),
                              (self.val_loader, "val")):
            name_split(loader, split, dataset)
        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.tfm_train = tfm_train
        self.tfm_test = tfm_test
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def test_loader(self):
        if self._test_loader is None:
            self._test_loader = name_split(build_data_loader(self._cfg, data_source=self.dataset.test,
                                                             **self._test_loader_args), "test", self.dataset)
        return self._test_loader

    @test_loader.setter
    def test_loader(self, loader):
        self._test_loader = loader

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x or []):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        table.append(["# val", f"{len(self.dataset.val or []):,}"])
        table.append(["# test", f"{self.dataset.test_size:,}"])
        print(tabulate(table))


class DatasetWrapper(TorchDataset):
    """Items -> dicts with `img`, `label`, `domain`, `impath`, `index` (and `img0`).

    `store`: a decoded-image store of `data_source` (same pixels as reading the file)."""

    store = None

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"DATALOADER.K_TRANSFORMS={self.k_tfm} needs a transform (INPUT.NO_TRANSFORM is True)")
        to_tensor = [T.Resize(tuple(cfg.INPUT.SIZE), interpolation=INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]),
                     T.ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(T.Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = T.Compose(to_tensor)
        self.split, self.listed_in = None, None  # set by name_split, for the unreadable-image message

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        try:
            img0 = self.store.image(idx) if self.store is not None else read_image(item.impath)
        except UnreadableImage as err:
            where = (f'it is listed in {self.listed_in} ("{self.split}" split)' if self.split else
                     "it is listed in the dataset's split")
            raise ImageReadError(f'Cannot read image "{item.impath}" ({err.reason}); {where} (label {item.label}, '
                                 f"item {idx} of the loader). Restore the file, or remove its entry from that "
                                 "file.") from err
        if self.transform is None:
            output["img"] = self.to_tensor(img0)
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def __getitems__(self, indices):
        if not indices:  # padding between two epochs of a persistent loader (skipped)
            return [{"index": -1}]
        reseed_like_fresh_worker(indices)  # a persistent worker's first batch of an epoch
        return [self[idx] for idx in indices]

    def _transform_image(self, tfm, img0):
        imgs = [tfm(img0) for _ in range(self.k_tfm)]
        return imgs[0] if len(imgs) == 1 else imgs
