"""Tip-Adapter (training-free cache model) and Tip-Adapter-F (cache keys fine-tuned),
Zhang et al., ECCV 2022, with the official per-dataset settings.

logits(f) = exp(logit_scale) * f @ T.T + alpha * exp(-beta * (1 - f @ K.T)) @ V

f: the normalised image feature; T: the zero-shot text classifier (the dataset's template,
ImageNet the 7-template ensemble); K: the cache keys, per few-shot training image the mean
feature over AUGMENT_EPOCH passes of the training augmentation (random resized crop with
scale 0.5-1, flip), normalised after averaging; V: one-hot labels. exp(logit_scale) is the 100
of the official code for released CLIP weights.

Tip-Adapter-F makes K a learned linear layer (AdamW lr 1e-3, eps 1e-4, batch 256, cosine
decay stepped every iteration over epochs x iterations), trained with the initial alpha and
beta. Both then search alpha and beta on the validation split of the run's protocol:
- fsval (default): the few-shot validation split; Tip-Adapter-F deploys its best epoch on it.
- nov: no search (the initial alpha and beta), Tip-Adapter-F deploys its last epoch.
- fullval: the dataset's full validation split, as the official code searches (flagged).
- oracle: the official code exactly: the full validation split (ImageNet: the test split) for
  the search, and Tip-Adapter-F's epoch picked by its *test* accuracy. Flagged, never ranked.
The zero-shot logits are multiplied by the official constant 100 (TRAINER.TIP_ADAPTER.ZS_LOGIT_SCALE
official), or by the backbone's own learned scale (learned), which differs for other backbones.
Everything runs in fp32 after the features are computed (the official adapter is fp16).
The search, its split and the values chosen are written to result.json.
"""
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from dassl.utils.errors import UserError

from trainers.common.classifier import class_features, l2_normalize
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.dataset_names import dataset_name_of_stem
from trainers.common.experiment import Method, backbone_option, register_method
from trainers.common.precision import effective_precision
from trainers.common.run_record import (RunRecordMixin, SourceStampedModule, check_checkpoint_source,
                                        run_source)
from trainers.common.split_features import augmented_train_features, eval_split_features
from trainers.common.templates import IMAGENET_TEMPLATES_SELECT, dataset_template


OFFICIAL_ZERO_SHOT_SCALE = 100.0  # the official code's constant for the zero-shot logits


@dataclass(frozen=True)
class TipSettings:
    search_scale: tuple  # (beta, alpha) upper ends of the search grids
    init_alpha: float
    epochs: int  # Tip-Adapter-F training epochs


# The official repository's configs/<dataset>.yaml (init_beta 1, search_step (200, 20),
# augment_epoch 10 and lr 1e-3 everywhere).
OFFICIAL_SETTINGS = {
    "Caltech101": TipSettings((12, 5), 3.0, 20),
    "DescribableTextures": TipSettings((13, 13), 2.0, 20),
    "EuroSAT": TipSettings((12, 10), 2.0, 100),
    "FGVCAircraft": TipSettings((30, 30), 5.0, 20),
    "Food101": TipSettings((10, 10), 1.17, 20),
    "ImageNet": TipSettings((7, 3), 1.17, 20),
    "OxfordFlowers": TipSettings((50, 50), 10.0, 20),
    "OxfordPets": TipSettings((7, 3), 1.17, 20),
    "StanfordCars": TipSettings((20, 10), 3.0, 20),
    "SUN397": TipSettings((12, 10), 1.17, 20),
    "UCF101": TipSettings((7, 3), 1.17, 20),
}
IMAGENET_VARIANTS = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")
# Datasets without an official setting (the demo, the user's own folders) get ImageNet's.
FALLBACK = "ImageNet"


def dataset_settings(dataset):
    """(settings, the official dataset they come from) for DATASET.NAME `dataset`."""
    source = "ImageNet" if dataset in IMAGENET_VARIANTS else dataset
    source = source if source in OFFICIAL_SETTINGS else FALLBACK
    return OFFICIAL_SETTINGS[source], source


def search_grid(scale, steps):
    """The official grid: steps values from 0.1 up to (not including) scale."""
    return [i * (scale - 0.1) / steps + 0.1 for i in range(steps)]


class TipCache(SourceStampedModule):
    """The cache: keys [N*K, D] (learned in Tip-Adapter-F) and one-hot values [N*K, C]."""

    def __init__(self, n_items, dim, n_classes, learnable):
        super().__init__()
        keys = torch.zeros(n_items, dim)
        if learnable:
            self.keys = nn.Parameter(keys)
        else:
            self.register_buffer("keys", keys)
        self.register_buffer("values", torch.zeros(n_items, n_classes))

    def fill(self, keys, labels, source):
        with torch.no_grad():
            self.keys.copy_(keys)
            self.values.copy_(F.one_hot(labels, self.values.shape[1]).float())
        self.source = dict(source)

    def affinity(self, image_features):
        return image_features @ self.keys.t()

    def logits(self, image_features, beta):
        return torch.exp(-beta * (1 - self.affinity(image_features))) @ self.values


@TRAINER_REGISTRY.register()
class TipAdapter(RunRecordMixin, FrozenCLIPTrainer):
    """Training-free: build the cache, search alpha/beta on val, test."""

    learnable_keys = False
    model_name = "tip_adapter"

    def check_cfg(self, cfg):
        node = cfg.TRAINER.TIP_ADAPTER
        if node.AUGMENT_EPOCH < 1:
            raise UserError(f"TRAINER.TIP_ADAPTER.AUGMENT_EPOCH = {node.AUGMENT_EPOCH}; use at least 1")
        if len(node.SEARCH_STEP) != 2 or min(node.SEARCH_STEP) < 1:
            raise UserError(f"TRAINER.TIP_ADAPTER.SEARCH_STEP = {node.SEARCH_STEP}; give two positive "
                            f"counts (beta steps, alpha steps), e.g. (200, 20)")
        if node.SEARCH_SCALE and len(node.SEARCH_SCALE) != 2:
            raise UserError(f"TRAINER.TIP_ADAPTER.SEARCH_SCALE = {node.SEARCH_SCALE}; give (beta, alpha) "
                            f"upper ends, or () for the dataset's official values")
        if node.ZS_LOGIT_SCALE not in ("official", "learned"):
            raise UserError(f"TRAINER.TIP_ADAPTER.ZS_LOGIT_SCALE = {node.ZS_LOGIT_SCALE!r}; use official "
                            f"(the constant {OFFICIAL_ZERO_SHOT_SCALE:g} of the official code) or learned "
                            "(the backbone's own logit scale)")
        if cfg.DATASET.NUM_SHOTS < 1:
            raise UserError(f"{type(self).__name__} builds its cache from the few-shot training set: "
                            f"set DATASET.NUM_SHOTS (e.g. DATASET.NUM_SHOTS 16)")

    def templates(self):
        if self.cfg.DATASET.NAME in ("ImageNet",) + IMAGENET_VARIANTS:
            return list(IMAGENET_TEMPLATES_SELECT)
        return [dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self):
        node = self.cfg.TRAINER.TIP_ADAPTER
        precision = effective_precision(node.PREC, self.device, key="TRAINER.TIP_ADAPTER.PREC")
        self.clip_model = self.freeze_on_device(self.load_clip(), precision)
        self.text_features = class_features(self.clip_model, self.dm.dataset.classnames, self.templates())
        settings, source = dataset_settings(self.cfg.DATASET.NAME)
        self.settings_source = source
        self.init_alpha = settings.init_alpha if node.INIT_ALPHA < 0 else float(node.INIT_ALPHA)
        self.init_beta = float(node.INIT_BETA)
        self.search_scale = tuple(node.SEARCH_SCALE) or settings.search_scale
        self.alpha, self.beta = self.init_alpha, self.init_beta
        self.zero_shot_scale = (OFFICIAL_ZERO_SHOT_SCALE if node.ZS_LOGIT_SCALE == "official"
                                else self.clip_model.logit_scale.exp().float().item())
        dim = self.text_features.shape[1]
        self.cache = TipCache(len(self.dm.dataset.train_x), dim, self.num_classes, self.learnable_keys)
        self.cache.to(self.device)
        optim, sched = self.build_optimizer()
        self.register_model(self.model_name, self.cache, optim, sched)
        self.init_run_record(cache_size=len(self.dm.dataset.train_x),
                             settings_from=source, init_alpha=self.init_alpha, init_beta=self.init_beta)

    def build_optimizer(self):
        return None, None

    @torch.no_grad()
    def build_cache(self):
        """Keys: per image the mean feature over the augmented passes, then normalised."""
        passes = self.cfg.TRAINER.TIP_ADAPTER.AUGMENT_EPOCH
        print(f"Building the cache model from {len(self.dm.dataset.train_x)} training images "
              f"({passes} augmented passes)")
        features, labels = augmented_train_features(self, passes)
        self.cache.fill(l2_normalize(features.mean(dim=0)), labels, run_source(self.cfg))

    def logits(self, image_features, alpha=None, beta=None):
        features = l2_normalize(image_features.float())
        alpha = self.alpha if alpha is None else alpha
        beta = self.beta if beta is None else beta
        clip_logits = self.zero_shot_scale * features @ self.text_features.t()
        return clip_logits + alpha * self.cache.logits(features, beta)

    def val_selections(self):
        searches = self.cfg.TRAINER.TIP_ADAPTER.SEARCH_HP and self.protocol != "nov"
        search = [("alpha and beta", "TRAINER.TIP_ADAPTER.SEARCH_HP False or PROTOCOL nov")] if searches else []
        return super().val_selections() + search

    def train(self):
        self.check_val_selection()
        self.build_cache()
        self.save_model(0, self.output_dir, is_best=True)  # --eval-only finds it with or without --load-epoch
        self.final_test()

    @torch.no_grad()
    def search_alpha_beta(self):
        """The official grid search, on the few-shot validation split only."""
        node = self.cfg.TRAINER.TIP_ADAPTER
        if not node.SEARCH_HP or self.protocol == "nov":
            self.alpha, self.beta = self.init_alpha, self.init_beta
            self.run_record.update(search=None, alpha=self.alpha, beta=self.beta)
            return
        self.check_val_selection([("alpha and beta", "TRAINER.TIP_ADAPTER.SEARCH_HP False")])
        self.set_model_mode("eval")
        features, labels = eval_split_features(self, "val")
        features = l2_normalize(features)
        clip_logits = self.logits(features, alpha=0.0)
        betas = search_grid(self.search_scale[0], node.SEARCH_STEP[0])
        alphas = search_grid(self.search_scale[1], node.SEARCH_STEP[1])
        best_acc, best = 0.0, (0.0, 0.0)
        for beta in betas:
            cache_logits = self.cache.logits(features, beta)
            for alpha in alphas:
                acc = compute_accuracy(clip_logits + alpha * cache_logits, labels)[0].item()
                if acc > best_acc:  # strictly better: the first grid point wins a tie, as officially
                    best_acc, best = acc, (alpha, beta)
        self.alpha, self.beta = best
        split = getattr(self.dm.dataset, "val_source", None) or "val"
        print(f"Searched alpha x beta ({len(alphas)} x {len(betas)}) on the {split} split "
              f"({len(labels)} images): alpha {self.alpha:.4f}, beta {self.beta:.4f}, val accuracy {best_acc:.2f}%")
        self.run_record.update(
            search={"split": split, "protocol": self.protocol, "images": len(labels), "alpha_grid": [alphas[0], alphas[-1], len(alphas)],
                    "beta_grid": [betas[0], betas[-1], len(betas)], "val_accuracy": best_acc},
            alpha=self.alpha, beta=self.beta)

    def final_test(self):
        self.search_alpha_beta()
        return super().final_test()

    def load_model(self, directory, epoch=None):
        if directory:
            name = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
            path = os.path.join(directory, self.model_name, name)
            try:
                check_checkpoint_source(path, self.cfg, f"{type(self).__name__} cache")
            except FileNotFoundError:
                pass  # the engine's own message lists the files that are there
        super().load_model(directory, epoch)
        self.alpha, self.beta = self.init_alpha, self.init_beta


@TRAINER_REGISTRY.register()
class TipAdapterF(TipAdapter):
    """Tip-Adapter-F: the cache keys are fine-tuned with the initial alpha and beta."""

    learnable_keys = True

    def build_optimizer(self):
        optim = torch.optim.AdamW(self.cache.parameters(), lr=self.cfg.OPTIM.LR, eps=1e-4,
                                  weight_decay=self.cfg.OPTIM.WEIGHT_DECAY)
        steps = self.cfg.OPTIM.MAX_EPOCH * len(self.train_loader_x)
        return optim, torch.optim.lr_scheduler.CosineAnnealingLR(optim, steps)

    def build_model(self):
        super().build_model()
        if self.protocol == "nov":
            self.final_model = "last_step"
        elif self.protocol == "oracle":  # the official code keeps the epoch of best test accuracy
            self.final_model, self.selection_split = "best_val", "test"
        self.run_record.update(selection=(f"best epoch on the {self.selection_split} split"
                                          if self.final_model == "best_val" else "last epoch"))

    def train(self):
        FrozenCLIPTrainer.train(self)

    def before_train(self):
        self.build_cache()  # a resumed run then loads its trained keys over it
        super().before_train()

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.logits(self.image_features(image))
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        self.update_lr()  # cosine over every iteration, as the official code steps it
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}


def _tip_config(dataset, shots):
    return "rn50"


def _tip_f_overrides(dataset, shots):
    settings, _ = dataset_settings(dataset_name_of_stem(dataset))
    return ["OPTIM.MAX_EPOCH", str(settings.epochs)]


_TIP_PROTOCOLS = ("fsval", "nov", "fullval", "oracle")
register_method(Method(name="tip_adapter", trainer="TipAdapter", label="Tip-Adapter", config=_tip_config,
                       protocols=_TIP_PROTOCOLS, new_classes=False,
                       options={"BACKBONE": backbone_option()}))
register_method(Method(name="tip_adapter_f", trainer="TipAdapterF", label="Tip-Adapter-F", config=_tip_config,
                       overrides=_tip_f_overrides, protocols=_TIP_PROTOCOLS, new_classes=False,
                       options={"BACKBONE": backbone_option()}))
