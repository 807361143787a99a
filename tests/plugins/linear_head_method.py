"""A new method in one file, as a user would add it without touching the repository: a linear
head initialised from CLIP's text features, trained on frozen image features. Its declaration
makes it runnable by scripts/main.sh, the launcher, the tables and the demo (PLUGINS=this file).
"""
import torch

from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_lr_scheduler, build_optimizer
from trainers.common.classifier import class_features, cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import Method, register_method
from trainers.common.templates import dataset_template


@TRAINER_REGISTRY.register()
class LinearHeadProbe(FrozenCLIPTrainer):
    def build_model(self):
        self.clip_model = self.freeze_on_device(self.load_clip(), "fp32")
        init = class_features(self.clip_model, self.dm.dataset.classnames,
                              [dataset_template(self.cfg.DATASET.NAME)])
        self.head = torch.nn.ParameterList([torch.nn.Parameter(init)]).to(self.device)
        optim = build_optimizer(self.head, self.cfg.OPTIM)
        self.register_model("head", self.head, optim, build_lr_scheduler(optim, self.cfg.OPTIM))
        self.run_record = {"head_init": "text features"}

    def logits(self, image_features):
        return cosine_logits(image_features, self.head[0], self.clip_model.logit_scale)


register_method(Method(
    name="linear_head", trainer="LinearHeadProbe", label="Linear head (plugin)",
    config=lambda dataset, shots: "defaults", config_dir=None,
    overrides=lambda dataset, shots: ["OPTIM.NAME", "sgd", "OPTIM.LR", "0.01"],
))
