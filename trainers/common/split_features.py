"""Whole-split image features for methods that fit on precomputed features (Tip-Adapter's
cache, the linear probe), always obtained through the trainer's `image_features` and, when
TRAIN.FEATURE_CACHE is on, through the trainer's feature cache."""
import torch

from dassl.data.data_manager import build_data_loader, name_split
from dassl.utils.errors import UserError

from trainers.common.feature_cache import CachedFeatureBatches, FeatureSet


def ordered_loader(trainer, data_source, transform, exact=False):
    """Every item of `data_source` once, in order, with `transform` (no shuffling, no drop).
    `exact` (the training images, iterated several times): the exact fast loader, with
    persistent workers reseeded per pass as fresh ones and the images decoded once."""
    cfg, dataset = trainer.cfg, trainer.dm.dataset
    store = getattr(trainer.dm, "train_store", None) if exact and data_source is dataset.train_x else None
    loader = build_data_loader(cfg, sampler_type="SequentialSampler", data_source=data_source,
                               batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=transform, is_train=False,
                               exact=exact, store=store)
    # `_test`, not `test`: naming the split must not read a test split that is still sealed.
    named = {"train": dataset.train_x, "val": dataset.val, "test": getattr(dataset, "_test", None)}
    split = next((name for name, items in named.items() if items is data_source), None)
    return name_split(loader, split, dataset) if split else loader


@torch.no_grad()
def loader_features(trainer, loader):
    """(fp32 features [N, D], labels [N]) of every batch of `loader`, in loader order."""
    features, labels = [], []
    for batch in loader:
        images, label = trainer.parse_batch_test(batch)
        features.append(trainer.image_features(images).float())
        labels.append(label)
    return torch.cat(features), torch.cat(labels)


def image_store(trainer, transform, views):
    """The cache's per-image feature set for `transform` with `views` views, the same for every
    run seed (views seeded per image): one encoder pass per image for all runs and methods
    with the same backbone, transform and view count."""
    cache = trainer.feature_cache
    return FeatureSet(cache.root, cache.encoder, transform, views=views, run_seed=None)


def stored_image_features(trainer, data_source, transform, views, desc):
    """([N, V, D] features, labels [N]) of `data_source` from `image_store`, encoding only
    the images no run has stored yet."""
    cfg = trainer.cfg
    features = image_store(trainer, transform, views).load(
        [item.impath for item in data_source], lambda images: trainer.image_features(images.to(trainer.device)),
        cfg.DATALOADER.TEST.BATCH_SIZE, cfg.DATALOADER.NUM_WORKERS, desc=desc)
    labels = torch.tensor([item.label for item in data_source])
    return features.to(trainer.device), labels.to(trainer.device)


def test_transform_features(trainer, data_source, split):
    """Features of `data_source` under the test transform (deterministic, one per image).
    In the fast pipeline the training and validation images come from the per-image store,
    shared with every other run (the test split keeps its exact, per-batch cache)."""
    cache = trainer.feature_cache
    if cache is not None and cache.pipeline["name"] == "fast" and split in ("train", "val"):
        loaded = getattr(trainer, "val_loader", None) if split == "val" else None
        if isinstance(getattr(loaded, "dataset", None), CachedFeatureBatches):  # already read for best_val
            return loader_features(trainer, loaded)
        features, labels = stored_image_features(trainer, data_source, trainer.dm.tfm_test, 1, split)
        return features[:, 0].float(), labels
    loader = ordered_loader(trainer, data_source, trainer.dm.tfm_test)
    if trainer.feature_cache is not None:
        loader = trainer.feature_cache.eval_loader(loader, split)
    return loader_features(trainer, loader)


def eval_split_features(trainer, split):
    """Features of the few-shot "val" split or the "test" split (test transform)."""
    data_source = trainer.dm.dataset.val if split == "val" else trainer.dm.dataset.test
    if not data_source:
        raise UserError(f"{trainer.cfg.DATASET.NAME} has no {split} split (0 entries) to compute features on: "
                        f"use a split file with {split} entries, or a method that does not need them")
    return test_transform_features(trainer, data_source, split)


def augmented_train_features(trainer, passes):
    """Training-transform features of the training images, `passes` augmented passes:
    [passes, N, D] in `dm.dataset.train_x` order, plus the labels [N].

    In the fast pipeline the passes are the cache's stored views of each image (as many as it
    keeps, printed when that differs from `passes`), so no image is encoded again; otherwise
    every pass goes through the encoder with fresh augmentations, as in the reference."""
    loader = ordered_loader(trainer, trainer.dm.dataset.train_x, trainer.dm.tfm_train, exact=True)
    if trainer.feature_cache is None or trainer.feature_cache.train_set is None:
        runs = [loader_features(trainer, loader) for _ in range(passes)]
        return torch.stack([features for features, _ in runs]), runs[0][1]
    loader = trainer.feature_cache.train_loader(loader)
    views = trainer.feature_cache.views
    if views != passes:
        print(f"Feature cache: {views} stored view(s) per training image stand for the {passes} "
              f"augmented passes (TRAIN.FEATURE_CACHE.VIEWS, capped at OPTIM.MAX_EPOCH)")
    runs = []
    for view in range(views):
        loader.dataset.view = view
        runs.append(loader_features(trainer, loader))
    return torch.stack([features for features, _ in runs]), runs[0][1]
