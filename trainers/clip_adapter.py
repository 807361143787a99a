"""CLIP-Adapter: a residual bottleneck MLP on CLIP's image features."""
import torch.nn as nn

from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_lr_scheduler, build_optimizer

from trainers.common.classifier import class_features, cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import Method, backbone_option, register_method, rn50_prefix_replaced
from trainers.common.templates import dataset_template
from trainers.coop import coop_schedule


class Adapter(nn.Module):
    """Linear(D, D/r) -> ReLU -> Linear(D/r, D) -> ReLU, no biases (keys fc.0/fc.2 as the reference)."""

    def __init__(self, dim, reduction=4):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(inplace=True),
            nn.Linear(dim // reduction, dim, bias=False), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.fc(x)


@TRAINER_REGISTRY.register()
class CLIP_Adapter(FrozenCLIPTrainer):
    """CLIP-Adapter (Gao et al., IJCV 2023), visual adapter only."""

    def check_cfg(self, cfg):
        node = cfg.TRAINER.CLIP_ADAPTER
        if not 0.0 <= node.RATIO <= 1.0:
            raise ConfigError(f"TRAINER.CLIP_ADAPTER.RATIO = {node.RATIO}; use a value in [0, 1]")
        if node.REDUCTION < 1:
            raise ConfigError(f"TRAINER.CLIP_ADAPTER.REDUCTION = {node.REDUCTION}; use an integer >= 1")

    def build_model(self):
        self.clip_model = self.freeze_on_device(self.load_clip(), "fp32")
        template = dataset_template(self.cfg.DATASET.NAME)
        self.text_features = class_features(self.clip_model, self.dm.dataset.classnames, template)
        self.ratio = self.cfg.TRAINER.CLIP_ADAPTER.RATIO
        dim = self.clip_model.embed_dim  # the joint embedding width D
        self.adapter = Adapter(dim, self.cfg.TRAINER.CLIP_ADAPTER.REDUCTION).to(self.device)
        optim = build_optimizer(self.adapter, self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model("clip_adapter", self.adapter, optim, sched)

    def logits(self, image_features):
        mixed = self.ratio * self.adapter(image_features) + (1 - self.ratio) * image_features
        return cosine_logits(mixed, self.text_features, self.clip_model.logit_scale)


# No official CLIP-Adapter configs were released: it runs CoOp's schedule (same config names).
register_method(Method(name="clip_adapter", trainer="CLIP_Adapter", label="CLIP-Adapter",
                       config=coop_schedule,
                       options={"BACKBONE": backbone_option(rn50_prefix_replaced)}))
