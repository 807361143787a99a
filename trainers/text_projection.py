"""TextProjectionTuning: CLIP's text projection tuned on the few-shot training set (the
"enhanced base" of TaskRes*; `python -m trainers.enhanced_base` runs it and writes the file).

The classifier is TaskRes' base with a learned projection: per class, the text tower's output
before the projection (EOT feature after ln_final) of every base prompt (raw class names,
ImageNet's 8 prompts) is averaged once; the class feature is that average times the projection.
The projection is linear, so with the released projection this is exactly TaskRes' base. Only
the projection trains (the learned module `text_projection`, an nn.Linear whose `weight` is the
transposed projection, [D, text width], the layout of the authors' enhanced-base files); the
logits are CLIP's cosine logits with its logit scale.
"""
import torch
import torch.nn as nn

from dassl.engine import TRAINER_REGISTRY
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils.errors import UserError

from trainers.common.classifier import cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.run_record import RunRecordMixin
from trainers.taskres import base_templates


@torch.no_grad()
def text_embeddings_before_projection(clip_model, classnames, templates, batch_size=256):
    """[n_cls, text width]: per class the mean over `templates` of the backbone's text feature
    before its projection (class names used raw, as TaskRes' base uses them)."""
    prompts = [t.format(name) for name in classnames for t in templates]
    tokens = clip_model.tokenize(prompts).to(clip_model.text_projection.device)
    outputs = []
    for start in range(0, len(tokens), batch_size):
        outputs.append(clip_model.encode_text_unprojected(tokens[start:start + batch_size]).float())
    return torch.cat(outputs).view(len(classnames), len(templates), -1).mean(dim=1)


@TRAINER_REGISTRY.register()
class TextProjectionTuning(RunRecordMixin, FrozenCLIPTrainer):
    """Tunes only CLIP's text projection, on fixed per-class text embeddings."""

    def check_cfg(self, cfg):
        if cfg.DATASET.NUM_SHOTS < 1:
            raise UserError("TextProjectionTuning tunes on the few-shot training set: set "
                            "DATASET.NUM_SHOTS (e.g. DATASET.NUM_SHOTS 16)")

    def build_model(self):
        self.clip_model = self.freeze_on_device(self.load_clip(), "fp32")
        templates = base_templates(self.cfg.DATASET.NAME)
        self.text_embeddings = text_embeddings_before_projection(self.clip_model, self.dm.dataset.classnames,
                                                                 templates)
        width, dim = self.clip_model.text_projection.shape
        self.projection = nn.Linear(width, dim, bias=False).to(self.device)
        with torch.no_grad():
            self.projection.weight.copy_(self.clip_model.text_projection.t())
        optim = build_optimizer(self.projection, self.cfg.OPTIM)
        self.register_model("text_projection", self.projection, optim, build_lr_scheduler(optim, self.cfg.OPTIM))

    def logits(self, image_features):
        return cosine_logits(image_features, self.projection(self.text_embeddings), self.clip_model.logit_scale)
