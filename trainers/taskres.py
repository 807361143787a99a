"""TaskRes: a frozen zero-shot classifier (the base) plus a learned task residual.

classifier = normalise(base + alpha * residual); only the residual trains, in fp32.
"""
import os.path as osp

import torch
import yaml
import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint

from trainers.common.classifier import class_features, cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import Method, Option, register_method
from trainers.common.precision import PRECISIONS, effective_precision
from trainers.common.templates import IMAGENET_TEMPLATES_SELECT, dataset_template


class TaskResLearner(nn.Module):
    """Base classifier (buffer) + alpha * residual (parameter), one row per class.

    Key names match the reference checkpoints. With `source_rows` (ImageNet-A/R evaluated
    with an ImageNet model), a checkpoint holding every ImageNet class is cut to those rows.
    """

    def __init__(self, base, alpha, source_rows=None, source_classes=None):
        super().__init__()
        self.register_buffer("base_text_features", base)
        self.text_feature_residuals = nn.Parameter(torch.zeros_like(base))
        self.alpha = alpha
        self.source_rows, self.source_classes = source_rows, source_classes

    def forward(self):
        return self.base_text_features + self.alpha * self.text_feature_residuals

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        residual = state_dict.get(prefix + "text_feature_residuals")
        if self.source_rows is not None and residual is not None and len(residual) == self.source_classes:
            print(f"Checkpoint has all {len(residual)} ImageNet classes: keeping the rows of the "
                  f"{len(self.source_rows)} classes of this dataset")
            for key in ("base_text_features", "text_feature_residuals"):
                if prefix + key in state_dict:
                    state_dict[prefix + key] = state_dict[prefix + key][self.source_rows]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def load_enhanced_text_projection(clip_model, path):
    """Replace CLIP's text projection by the transposed `state_dict["weight"]` of `path`
    (cast to CLIP's dtype: rounded to fp16 only when the base is computed in fp16)."""
    state_dict = load_checkpoint(path).get("state_dict", {})
    if "weight" not in state_dict:
        raise KeyError(f'TRAINER.TaskRes.ENHANCED_BASE = "{path}" has no state_dict["weight"]; '
                       f"expected a linear-probe checkpoint of shape [D, text width]")
    projection = state_dict["weight"].t()
    if projection.shape != clip_model.text_projection.shape:
        raise ValueError(f'TRAINER.TaskRes.ENHANCED_BASE = "{path}": weight transposed has shape '
                         f"{tuple(projection.shape)}, CLIP {tuple(clip_model.text_projection.shape)}; "
                         f"was it trained for another backbone?")
    print(f"Enhanced base: text projection replaced by {path}")
    with torch.no_grad():
        clip_model.text_projection.copy_(projection)


def imagenet_source_rows(dataset):
    """(rows of an ImageNet checkpoint that hold this dataset's classes, number of ImageNet
    classes) for ImageNet-A/R; (None, None) for other datasets."""
    indices = getattr(dataset, "imagenet_class_indices", None)
    if indices is None:
        return None, None
    names = [dataset.imagenet_classnames[i] for i in indices]
    if names != list(dataset.classnames):
        raise ValueError(f"{type(dataset).__name__}: imagenet_class_indices do not point at its "
                         f"class names (e.g. {names[:3]} vs {list(dataset.classnames)[:3]})")
    return torch.as_tensor(indices, dtype=torch.long), len(dataset.imagenet_classnames)


@TRAINER_REGISTRY.register()
class TaskRes(FrozenCLIPTrainer):
    """Task Residual tuning (Yu et al., CVPR 2023)."""

    def check_cfg(self, cfg):  # fail before data and CLIP are loaded
        if cfg.TRAINER.TaskRes.PREC not in PRECISIONS:
            raise ValueError(f"TRAINER.TaskRes.PREC = {cfg.TRAINER.TaskRes.PREC!r}; use one of {PRECISIONS}")

    def base_templates(self):
        name = self.cfg.DATASET.NAME
        extra = list(IMAGENET_TEMPLATES_SELECT) if name == "ImageNet" else []
        return extra + [dataset_template(name)]

    def build_model(self):
        cfg = self.cfg.TRAINER.TaskRes
        # Only the base is computed in PREC; training and test run in fp32.
        precision = effective_precision(cfg.PREC, self.device, key="TRAINER.TaskRes.PREC")
        self.clip_model = self.freeze_on_device(self.load_clip(), precision)
        if cfg.ENHANCED_BASE.lower() not in ("", "none"):
            load_enhanced_text_projection(self.clip_model, cfg.ENHANCED_BASE)
        # Raw class names and unnormalised averages, as the reference computes the base.
        base = class_features(self.clip_model, self.dm.dataset.classnames, self.base_templates(),
                              replace_underscore=False, normalize_each=False, normalize_output=False)
        self.clip_model.float()

        self.learner = TaskResLearner(base, cfg.RESIDUAL_SCALE, *imagenet_source_rows(self.dm.dataset))
        self.learner.to(self.device)
        optim = build_optimizer(self.learner, self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model("prompt_learner", self.learner, optim, sched)

    def logits(self, image_features):
        return cosine_logits(image_features, self.learner(), self.clip_model.logit_scale)


def taskres_config(dataset, shots):
    """Adam, batch 256; lr 2e-3 (ImageNet 2e-4); 100 epochs up to 4 shots, 200 beyond."""
    lr = "2e-4" if dataset == "imagenet" else "2e-3"
    return f"adam_lr{lr}_B256_ep{100 if shots <= 4 else 200}"


def taskres_alpha(dataset, shots):
    """The residual scale of the paper: 0.5, and 1.0 on Flowers."""
    return ["TRAINER.TaskRes.RESIDUAL_SCALE", str(1.0 if dataset == "oxford_flowers" else 0.5)]


NO_ENHANCED_BASE = ("", "none")


def enhanced_base_file(value, dataset, shots):
    """A file is used as given; a folder is read in the released strong_base layout
    `<folder>/<DatasetName>/rn50_<K>shots/model.pth.tar` (DatasetName from the dataset config)."""
    path = value
    if osp.isdir(value):
        config = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                          "configs", "datasets", f"{dataset}.yaml")
        with open(config) as f:
            name = yaml.safe_load(f)["DATASET"]["NAME"]
        path = osp.join(value, name, f"rn50_{shots}shots", "model.pth.tar")
    if not osp.isfile(path):
        raise ValueError(f"ENHANCED_BASE={value}: no weights file {path} (give a file, a "
                         f"strong_base/ folder laid out <DatasetName>/rn50_<K>shots/"
                         f"model.pth.tar, or none)")
    return path


register_method(Method(
    name="taskres", trainer="TaskRes", label="TaskRes", config=taskres_config,
    overrides=taskres_alpha,
    options={"ENHANCED_BASE": Option(
        "--enhanced-base", "", "enhanced base: a weights file, a strong_base/ folder, or none",
        normalize=lambda v: "none" if v.lower() == "none" else v,
        resolve=enhanced_base_file, unset=NO_ENHANCED_BASE)},
    variant=lambda v: "" if v["ENHANCED_BASE"] in NO_ENHANCED_BASE else "enhanced_base",
))
