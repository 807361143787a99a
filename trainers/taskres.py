"""TaskRes: a frozen zero-shot classifier (the base) plus a learned task residual.

classifier = normalise(base + alpha * residual); only the residual trains, in fp32.

The paper's ablations are config keys of the same trainer (defaults: TaskRes itself):
- TEXT_RESIDUAL: `residual` t' = t + alpha * x (TaskRes), `adapter` t' = phi(t),
  `adapter_residual` t' = t + alpha * phi(t) (phi: CLIP-Adapter's bottleneck MLP, no biases,
  hidden D // ADAPTER_REDUCTION, applied to each class row of the base), `none` t' = t.
- IMAGE_RESIDUAL: image features f' = f + alpha * x_img, one learned D-vector shared by every
  image and added before normalisation (TaskRes-I with TEXT_RESIDUAL none; I&T with residual).
- LEARN_ALPHA: alpha becomes a parameter initialised at RESIDUAL_SCALE (shared by both sides).
With nothing to learn (TEXT_RESIDUAL none, no image residual) the base alone is evaluated.
"""
import os.path as osp

import torch
import torch.nn as nn

from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_checkpoint
from dassl.utils.errors import CheckpointError, UserError

from trainers.clip_adapter import Adapter
from trainers.common.dataset_names import dataset_name_of_stem
from trainers.common.classifier import class_features, cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import (DEFAULT_BACKBONE, Method, Option, backbone_option, backbone_stem,
                                        register_method)
from trainers.common.precision import PRECISIONS, effective_precision
from trainers.common.run_record import RunRecordMixin, trainable_parameter_count
from trainers.common.templates import IMAGENET_TEMPLATES_SELECT, dataset_template


class TaskResLearner(nn.Module):
    """Base classifier (buffer) + alpha * residual (parameter), one row per class.

    Key names match the reference checkpoints. With `source_rows` (ImageNet-A/R evaluated
    with an ImageNet model), a checkpoint holding every ImageNet class is cut to those rows.
    The ablation variants (module docstring) add or replace learned parts; the defaults
    build exactly the reference learner.
    """

    def __init__(self, base, alpha, source_rows=None, source_classes=None, text_residual="residual",
                 image_residual=False, learn_alpha=False, adapter_reduction=4):
        super().__init__()
        self.register_buffer("base_text_features", base)
        self.text_residual, self.image_residual = text_residual, image_residual
        if text_residual == "residual":
            self.text_feature_residuals = nn.Parameter(torch.zeros_like(base))
        elif text_residual in ("adapter", "adapter_residual"):
            self.text_adapter = Adapter(base.shape[1], adapter_reduction)
        if image_residual:
            self.image_feature_residual = nn.Parameter(torch.zeros(base.shape[1], dtype=base.dtype))
        self.alpha = nn.Parameter(torch.tensor(float(alpha))) if learn_alpha else alpha
        self.source_rows, self.source_classes = source_rows, source_classes

    def forward(self):
        if self.text_residual == "residual":
            return self.base_text_features + self.alpha * self.text_feature_residuals
        if self.text_residual == "adapter":
            return self.text_adapter(self.base_text_features)
        if self.text_residual == "adapter_residual":
            return self.base_text_features + self.alpha * self.text_adapter(self.base_text_features)
        return self.base_text_features

    def adapt_image(self, image_features):
        if not self.image_residual:
            return image_features
        return image_features + self.alpha * self.image_feature_residual

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        base = state_dict.get(prefix + "base_text_features")
        if self.source_rows is not None and base is not None and len(base) == self.source_classes:
            print(f"Checkpoint has all {len(base)} ImageNet classes: keeping the rows of the "
                  f"{len(self.source_rows)} classes of this dataset")
            for key in ("base_text_features", "text_feature_residuals"):
                if prefix + key in state_dict:
                    state_dict[prefix + key] = state_dict[prefix + key][self.source_rows]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


ENHANCED_BASE_HELP = ("make one with `python -m trainers.enhanced_base --dataset-config-file "
                      "configs/datasets/<dataset>.yaml --root <data> --shots <K> --seed <S> --backbone <name> "
                      "--output strong_base`, or pass --enhanced-base none")
IMAGENET_SHIFTS = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")


def check_enhanced_base_source(path, meta, cfg):
    """An enhanced base made by this toolkit records what it was tuned for; the authors' files
    record nothing and load as they are. An ImageNet base serves its four shifted test sets."""
    wanted = {"backbone": cfg.MODEL.BACKBONE.NAME, "dataset": cfg.DATASET.NAME, "shots": int(cfg.DATASET.NUM_SHOTS)}
    made_for_imagenet = meta.get("dataset") == "ImageNet" and wanted["dataset"] in IMAGENET_SHIFTS
    problems = []
    if meta.get("backbone") != wanted["backbone"]:
        problems.append(f"backbone {meta.get('backbone')} (this run: {wanted['backbone']})")
    if meta.get("dataset") != wanted["dataset"] and not made_for_imagenet:
        problems.append(f"dataset {meta.get('dataset')} (this run: {wanted['dataset']})")
    elif wanted["shots"] > 0 and not made_for_imagenet and meta.get("shots") != wanted["shots"]:
        problems.append(f"{meta.get('shots')} shots (this run: {wanted['shots']})")
    if problems:
        raise UserError(f'The enhanced base "{path}" was tuned for {", ".join(problems)}. Pass the enhanced '
                        f"base of this backbone, dataset and shot count, or {ENHANCED_BASE_HELP}.")


def load_enhanced_text_projection(clip_model, path, cfg=None):
    """Replace CLIP's text projection by the transposed `state_dict["weight"]` of `path`
    (cast to CLIP's dtype: rounded to fp16 only when the base is computed in fp16).
    With `cfg`, a file that records what it was tuned for must match this run."""
    where = f'The enhanced base "{path}" (--enhanced-base / TRAINER.TaskRes.ENHANCED_BASE)'
    try:
        checkpoint = load_checkpoint(path)
    except FileNotFoundError:
        raise UserError(f"{where} does not exist. Check the path, or {ENHANCED_BASE_HELP}.") from None
    except (RuntimeError, CheckpointError) as error:  # damaged, truncated or not a checkpoint
        reason = str(error.__cause__ or error)
        raise UserError(f"{where} cannot be read ({reason}): the file is damaged or not a PyTorch "
                        f"checkpoint. Download it again, or {ENHANCED_BASE_HELP}.") from None
    state_dict = checkpoint.get("state_dict", {}) if isinstance(checkpoint, dict) else {}
    if "weight" not in state_dict:
        raise UserError(f'{where} has no state_dict["weight"]; expected a text projection of shape '
                        f"[D, text width]. Pass an enhanced base file, or {ENHANCED_BASE_HELP}.")
    if cfg is not None and isinstance(checkpoint.get("meta"), dict):
        check_enhanced_base_source(path, checkpoint["meta"], cfg)
    projection = state_dict["weight"].t()
    if projection.shape != clip_model.text_projection.shape:
        raise UserError(f"{where}: weight transposed has shape {tuple(projection.shape)}, this CLIP's "
                        f"text projection {tuple(clip_model.text_projection.shape)}: it was made for another "
                        f"backbone. Pass the enhanced base of this backbone, or {ENHANCED_BASE_HELP}.")
    print(f"Enhanced base: text projection replaced by {path}")
    clip_model.set_text_projection(projection)


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


TEXT_RESIDUALS = ("residual", "adapter", "adapter_residual", "none")


def base_templates(dataset_name):
    """The base's prompts: the dataset's template; ImageNet adds the 7 ensemble templates."""
    extra = list(IMAGENET_TEMPLATES_SELECT) if dataset_name == "ImageNet" else []
    return extra + [dataset_template(dataset_name)]


@TRAINER_REGISTRY.register()
class TaskRes(RunRecordMixin, FrozenCLIPTrainer):
    """Task Residual tuning (Yu et al., CVPR 2023)."""

    def check_cfg(self, cfg):  # fail before data and CLIP are loaded
        node = cfg.TRAINER.TaskRes
        if node.PREC not in PRECISIONS:
            raise ConfigError(f"TRAINER.TaskRes.PREC = {node.PREC!r}; use one of {PRECISIONS}")
        if node.TEXT_RESIDUAL not in TEXT_RESIDUALS:
            raise UserError(f"TRAINER.TaskRes.TEXT_RESIDUAL = {node.TEXT_RESIDUAL!r}; use one of {TEXT_RESIDUALS}")
        uses_alpha = node.TEXT_RESIDUAL in ("residual", "adapter_residual") or node.IMAGE_RESIDUAL
        if node.LEARN_ALPHA and not uses_alpha:
            raise UserError(f"TRAINER.TaskRes.LEARN_ALPHA True has no alpha to learn with TEXT_RESIDUAL "
                            f"{node.TEXT_RESIDUAL} and IMAGE_RESIDUAL False; use TEXT_RESIDUAL residual "
                            f"or adapter_residual, or IMAGE_RESIDUAL True")
        if node.ADAPTER_REDUCTION < 1:
            raise UserError(f"TRAINER.TaskRes.ADAPTER_REDUCTION = {node.ADAPTER_REDUCTION}; use an integer >= 1")

    def base_templates(self):
        return base_templates(self.cfg.DATASET.NAME)

    def build_model(self):
        cfg = self.cfg.TRAINER.TaskRes
        # Only the base is computed in PREC; training and test run in fp32.
        precision = effective_precision(cfg.PREC, self.device, key="TRAINER.TaskRes.PREC")
        self.clip_model = self.freeze_on_device(self.load_clip(), precision)
        if cfg.ENHANCED_BASE.lower() not in ("", "none"):
            load_enhanced_text_projection(self.clip_model, cfg.ENHANCED_BASE, self.cfg)
        # Raw class names and unnormalised averages, as the reference computes the base.
        base = class_features(self.clip_model, self.dm.dataset.classnames, self.base_templates(),
                              replace_underscore=False, normalize_each=False, normalize_output=False)
        self.clip_model.float()

        self.learner = TaskResLearner(base, cfg.RESIDUAL_SCALE, *imagenet_source_rows(self.dm.dataset),
                                      text_residual=cfg.TEXT_RESIDUAL, image_residual=cfg.IMAGE_RESIDUAL,
                                      learn_alpha=cfg.LEARN_ALPHA, adapter_reduction=cfg.ADAPTER_REDUCTION)
        self.learner.to(self.device)
        if cfg.ENHANCED_BASE.lower() not in ("", "none"):
            self.run_record["enhanced_base"] = cfg.ENHANCED_BASE  # its text projection was tuned beforehand
        if trainable_parameter_count([self.learner]) == 0:
            return  # the base alone: nothing registered, nothing trained or saved
        optim = build_optimizer(self.learner, self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model("prompt_learner", self.learner, optim, sched)

    def train(self):
        if not self.get_model_names():
            print("TaskRes with TEXT_RESIDUAL none and IMAGE_RESIDUAL False has nothing to train: "
                  "evaluating the base classifier")
            self.final_test()
            return
        super().train()

    def after_train(self):
        if isinstance(self.learner.alpha, nn.Parameter):
            self.run_record["learned_alpha"] = self.learner.alpha.item()
        super().after_train()

    def logits(self, image_features):
        return cosine_logits(self.learner.adapt_image(image_features), self.learner(), self.clip_model.logit_scale)


def taskres_config(dataset, shots):
    """Adam, batch 256; lr 2e-3 (ImageNet 2e-4); 100 epochs up to 4 shots, 200 beyond."""
    lr = "2e-4" if dataset == "imagenet" else "2e-3"
    return f"adam_lr{lr}_B256_ep{100 if shots <= 4 else 200}"


def taskres_alpha(dataset, shots):
    """The residual scale of the paper: 0.5, and 1.0 on Flowers."""
    return ["TRAINER.TaskRes.RESIDUAL_SCALE", str(1.0 if dataset == "oxford_flowers" else 0.5)]


def taskres_backbone_config(backbone, stem):
    """The official configs of the other backbones end in the backbone's name
    (adam_lr2e-4_B256_ep200_vit_b16)."""
    return stem if backbone == DEFAULT_BACKBONE else f"{stem}_{backbone_stem(backbone)}"


NO_ENHANCED_BASE = ("", "none")


def enhanced_base_file(value, dataset, shots):
    """A file is used as given; a folder is read in the released strong_base layout
    `<folder>/<DatasetName>/rn50_<K>shots/model.pth.tar` (DatasetName from the dataset config)."""
    path = value
    if osp.isdir(value):
        path = osp.join(value, dataset_name_of_stem(dataset), f"rn50_{shots}shots", "model.pth.tar")
    if not osp.isfile(path):
        raise ValueError(f"ENHANCED_BASE={value}: no weights file {path} (give a file, a "
                         f"strong_base/ folder laid out <DatasetName>/rn50_<K>shots/"
                         f"model.pth.tar, or none)")
    return path


ENHANCED_BASE_OPTION = Option(
    "--enhanced-base", "", "enhanced base: a weights file, a strong_base/ folder, or none",
    normalize=lambda v: "none" if v.lower() == "none" else v,
    resolve=enhanced_base_file, unset=NO_ENHANCED_BASE)

register_method(Method(
    name="taskres", trainer="TaskRes", label="TaskRes", config=taskres_config,
    overrides=taskres_alpha,
    options={"ENHANCED_BASE": ENHANCED_BASE_OPTION,
             "BACKBONE": backbone_option(taskres_backbone_config)},
    variant=lambda v: "" if v["ENHANCED_BASE"] in NO_ENHANCED_BASE else "enhanced_base",
))
