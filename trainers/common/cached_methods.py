"""Shared base of the methods that fit on frozen, cached image features (LP++, CLAP, GDA,
ProKeR): one encoder pass per image per backbone, transform and view count, for every run.

Where the features come from (`support_features`, `val_features`):
- training images: V views of the training transform, view v of an image drawn from a seed
  derived from the image's content digest and v only (`feature_cache.view_seed`), so the
  same V views serve every shot count, seed and method with the same backbone, transform and
  V. The store is the feature cache's per-image set with `run_seed` None, the very key that
  Tip-Adapter / TaskRes use in the fast pipeline with TRAIN.FEATURE_CACHE.VIEWS_PER_SEED
  False and the same VIEWS and INPUT settings: those runs read the same files.
- methods whose official features use no augmentation (ProKeR on ImageNet) take the test
  transform instead (`augmented = False`), one view.
- the few-shot validation split: test-transform features keyed per image (not per batch),
  so a sweep over shots and seeds encodes each validation image once.
- the test split: the engine's test loader (exact cached features), read only by the final
  evaluation: while a method fits, the engine keeps the test split sealed, so an attempt to
  read it stops the run.
With TRAIN.FEATURE_CACHE.ENABLED False (pipeline reference) nothing is stored: the views are
fresh augmented passes through the encoder drawn from the run's random stream.
"""
import math

import torch
from yacs.config import CfgNode as CN

from dassl.utils.errors import UserError

from trainers.common.classifier import class_features
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.precision import effective_precision
from trainers.common.run_record import RunRecordMixin, SourceStampedModule, run_source
from trainers.common.split_features import (augmented_train_features, eval_split_features, stored_image_features,
                                            test_transform_features)
from trainers.common.templates import IMAGENET_TEMPLATES_SELECT, dataset_template

IMAGENET_FAMILY = ("ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")
SOURCE_KEYS = ("dataset", "shots", "seed", "backbone", "views")


def extend_cached_cfg(cfg):
    """Config keys of the cached-feature methods (called from trainers/config.py)."""
    cfg.TRAINER.CACHED = CN()
    cfg.TRAINER.CACHED.VIEWS = -1  # views per training image; -1 = the method's official count
    cfg.TRAINER.CACHED.PREC = "fp16"  # the frozen encoder's precision (fp16 needs CUDA; fp32 on CPU)
    cfg.TRAINER.CACHED.MEMORY_LIMIT_GIB = 24.0  # ProKeR: the kernel solve must fit in this
    cfg.TRAINER.LP_PLUS_PLUS = CN()
    cfg.TRAINER.LP_PLUS_PLUS.EPOCHS = 300
    cfg.TRAINER.CLAP = CN()
    cfg.TRAINER.CLAP.CONSTRAINT = "l2"  # l2: CLAP; none: ZS-LP (no constraint)
    cfg.TRAINER.GDA = CN()
    cfg.TRAINER.GDA.ALPHA = -1.0  # >= 0: fixed blend factor, no search on the validation split
    cfg.TRAINER.PROKER = CN()
    cfg.TRAINER.PROKER.BETA = -1.0  # with LAMBDA >= 0: fixed kernel hyperparameters, no search
    cfg.TRAINER.PROKER.LAMBDA = -1.0
    return cfg


def tip_templates(dataset):
    """The text classifier's prompts in the Tip-Adapter code base (LP++, GDA, ProKeR build on
    it): ImageNet the 7-template ensemble, every other dataset its own template."""
    if dataset in IMAGENET_FAMILY:
        return list(IMAGENET_TEMPLATES_SELECT)
    return [dataset_template(dataset)]


def gib(n_bytes):
    return n_bytes / 2 ** 30


class CachedHead(SourceStampedModule):
    """What a cached method fitted, as buffers (saved, loaded and stamped with its source)."""

    def __init__(self, **shapes):
        super().__init__()
        for name, shape in shapes.items():
            self.register_buffer(name, torch.zeros(*shape))


class CachedFeatureTrainer(RunRecordMixin, FrozenCLIPTrainer):
    """Fits `self.head` on support features in `fit`; predicts with `logits`.

    Subclasses set `node` (their config node), `model_name`, `official_views(dataset)`,
    `head_shapes(dim, n_support)`, `text_classifier()`, `fit(support, labels)`, `logits(f)`.
    `support` is [V, N, D] fp32 (unnormalised: each method normalises as its code does).
    """

    model_name = "cached"
    augmented = True

    # ------------------------------------------------------------------ settings
    def check_cfg(self, cfg):
        name = type(self).__name__
        if cfg.DATASET.NUM_SHOTS < 1:
            raise UserError(f"{name} fits on the few-shot training set, but DATASET.NUM_SHOTS is "
                            f"{cfg.DATASET.NUM_SHOTS}; set DATASET.NUM_SHOTS to 1 or more (e.g. DATASET.NUM_SHOTS 16)")
        views = cfg.TRAINER.CACHED.VIEWS
        if views == 0 or views < -1:
            raise UserError(f"TRAINER.CACHED.VIEWS = {views}; use a positive count of augmented views per "
                            f"training image, or -1 for the method's official count")
        if cfg.TRAINER.CACHED.MEMORY_LIMIT_GIB <= 0:
            raise UserError(f"TRAINER.CACHED.MEMORY_LIMIT_GIB = {cfg.TRAINER.CACHED.MEMORY_LIMIT_GIB}; "
                            f"give the memory the method may use, in GiB (e.g. 24)")

    def official_views(self, dataset):
        raise NotImplementedError

    def views(self):
        configured = self.cfg.TRAINER.CACHED.VIEWS
        return configured if configured > 0 else self.official_views(self.cfg.DATASET.NAME)

    def source(self):
        return dict(run_source(self.cfg), views=self.n_views, augmented=self.augmented)

    # ------------------------------------------------------------------ model
    def build_model(self):
        precision = effective_precision(self.cfg.TRAINER.CACHED.PREC, self.device, key="TRAINER.CACHED.PREC")
        self.clip_model = self.freeze_on_device(self.load_clip(), precision)
        self.text_features = self.text_classifier().float().to(self.device)
        self.n_views = self.views()
        self.augmented = self.augmented and self.uses_augmentation()
        n_support = self.n_views * len(self.dm.dataset.train_x)
        self.head = CachedHead(**self.head_shapes(self.text_features.shape[1], n_support)).to(self.device)
        self.register_model(self.model_name, self.head)
        self.init_run_record(views=self.n_views, view_transform="train" if self.augmented else "test",
                             support_points=n_support)

    def uses_augmentation(self):
        return True

    def text_classifier(self):
        """[C, D] normalised class features from the Tip-Adapter templates (per-template
        normalised, averaged, normalised), "_" in class names read as spaces."""
        return class_features(self.clip_model, self.dm.dataset.classnames, tip_templates(self.cfg.DATASET.NAME))

    def count_trainable_params(self):
        return sum(b.numel() for b in self.head.buffers())  # fitted in closed form or by hand-written steps

    # ------------------------------------------------------------------ features
    @torch.no_grad()
    def support_features(self):
        """([V, N, D] fp32 features of the training images, labels [N]) in train_x order."""
        items = self.dm.dataset.train_x
        labels = torch.tensor([item.label for item in items], device=self.device)
        if self.feature_cache is None:  # reference pipeline: fresh passes, nothing stored
            if self.augmented:
                features, labels = augmented_train_features(self, self.n_views)
            else:
                features = test_transform_features(self, items, "train")[0].unsqueeze(0)
            return features.float(), labels
        transform = self.dm.tfm_train if self.augmented else self.dm.tfm_test
        print(f"{type(self).__name__}: {self.n_views} view(s) per training image "
              f"({'training augmentation' if self.augmented else 'test transform'}), from the shared feature cache")
        features, _ = stored_image_features(self, items, transform, self.n_views, "train")
        features = features.float().transpose(0, 1)  # [V, N, D]
        self.check_features(features, "training")
        return features, labels

    @torch.no_grad()
    def val_features(self, purpose):
        """(fp32 features [M, D], labels [M]) of the few-shot validation split; `purpose` names
        what is chosen on it, for the message when the split is too small."""
        items = self.dm.dataset.val or []
        n_classes = self.num_classes
        if len(items) < n_classes:
            source = getattr(self.dm.dataset, "dataset_dir", "the dataset folder")
            raise UserError(f"{type(self).__name__} chooses {purpose} on the few-shot validation split, which has "
                            f"{len(items)} image(s) for {n_classes} classes; it needs at least one per class "
                            f"({n_classes}). Add validation images to the split of {source}, or fix the value "
                            f"({self.fixed_value_hint()}) to skip the search.")
        labels = torch.tensor([item.label for item in items], device=self.device)
        if self.feature_cache is None:
            features, labels = eval_split_features(self, "val")
            return features.float(), labels
        features = stored_image_features(self, items, self.dm.tfm_test, 1, "val")[0][:, 0].float()
        self.check_features(features, "validation")
        return features, labels

    def fixed_value_hint(self):
        return "see the method's config keys"

    def check_features(self, features, what):
        dim = self.text_features.shape[1]
        if features.shape[-1] != dim:
            raise UserError(f"The cached {what} features have {features.shape[-1]} dimensions, but backbone "
                            f"{self.cfg.MODEL.BACKBONE.NAME} gives {dim}: the feature cache under "
                            f"{self.feature_cache.root} was written by another backbone. Point "
                            f"TRAIN.FEATURE_CACHE.ROOT at a fresh folder, or delete that cache folder.")

    # ------------------------------------------------------------------ run
    def train(self):
        self.set_model_mode("eval")
        support, labels = self.support_features()  # the test split stays sealed until final_test
        self.fit(support, labels)
        self.head.source = self.source()
        self.save_model(0, self.output_dir, is_best=True)  # --eval-only finds it with or without --load-epoch
        print(f"Image encoder passes: {self.image_encoder_forwards:,}")
        self.final_test()

    def fit(self, support, labels):
        raise NotImplementedError

    def load_model(self, directory, epoch=None):
        super().load_model(directory, epoch)
        if directory:
            self.check_loaded_source(directory)

    def check_loaded_source(self, directory):
        stored, current = dict(self.head.source), self.source()
        wrong = [k for k in SOURCE_KEYS if stored.get(k) != current.get(k)]
        if wrong:
            def show(source):
                return ", ".join(f"{k} {source.get(k, '?')}" for k in SOURCE_KEYS)
            raise UserError(f'The {type(self).__name__} model in "{directory}" was fitted on features of '
                            f"{show(stored)}, but this run has {show(current)}. Evaluate it with the settings "
                            f"it was fitted with (MODEL.BACKBONE.NAME {stored.get('backbone')}, TRAINER.CACHED."
                            f"VIEWS {stored.get('views')}, --seed {stored.get('seed')}, DATASET.NUM_SHOTS "
                            f"{stored.get('shots')}), or fit it again.")


def kernel_solve_bytes(n_support, itemsize, n_query=0, n_classes=0):
    """Peak bytes of the eigendecomposition route of ProKeR's solve: the kernel, its
    eigenvectors and the LAPACK divide-and-conquer workspace (about 2 n^2), plus the
    query-by-support kernel and the right-hand sides."""
    n = n_support
    return itemsize * (4 * n * n + n * (n_query + 2 * n_classes + 8))


def format_gib(n_bytes):
    return f"{math.ceil(gib(n_bytes) * 10) / 10:.1f} GiB"
