"""2SFS: two-stage few-shot adaptation (LayerNorms first, then a linear classifier).

Paper: M. Farina, M. Mancini, G. Iacca, E. Ricci, "Rethinking Few-Shot Adaptation of
Vision-Language Models in Two Stages", CVPR 2025 (arXiv 2503.11609). Official code:
github.com/FarinaMatteo/rethinking_fewshot_vlms, commit 64ac143c7d22803bfeeaadfe42f570220ab29b06
(read: main.py, fs/twostage.py, fs/utils/).

One set of hyperparameters for every dataset, shot count, backbone and both protocols, all kept:
a budget of M = 300 x shots iterations of batch 32; stage 1 (the first int(0.6 x budget)) tunes
LayerNorms of both encoders with the CLIP loss (text features of all classes from the template
"a photo of a {}." through the adapted text encoder); stage 2 (the rest) freezes the encoders
and trains a cosine classifier initialised with the adapted text features of the training
classes. Each stage: AdamW lr 2e-4, weight decay 0.01, betas (0.9, 0.999), its own cosine down to
1e-6 over its own iterations, a fresh pass over the loader; fp16 autocast on fp32 weights with a
loss scaler; logits exp(CLIP's logit scale) x cosine; last iterate. Which LayerNorms: the official
selection marks ln_pre, ln_post and ln_final trainable and then freezes them again (each name is
visited twice), so only the two LayerNorms inside every block train (61,440 values on ViT-B/16);
we train exactly those. Inference is selective: a test class whose name the classifier holds
uses its learned row, any other class (base-to-new "new" classes) its text feature from the
adapted text encoder, so the base-to-new protocol is: train on base, `--eval-only` on new.

Differences: the official loop does not count an iteration whose fp16 step the loss scaler
skipped (overflow), so a GPU run there may take a few more batches; here every batch is one
iteration (no skips happen on a CPU or in bf16/fp32). Not matched: the few-shot subset (they ship
fixed split files), data order and augmentation draws. No random draw enters the initialisation.

Published ViT-B/16 numbers: the base-to-new 11-dataset average, base 85.55, new 75.48, HM 80.20
(registered below; as the Awesome-Prompt-Adapter-Learning-for-VLMs list and two later papers
quote the paper's table, which was not available here). The all-to-all few-shot table (the
paper's Table 2) was not available either: neither the repository (FarinaMatteo/
rethinking_fewshot_vlms at 64ac143, which defers per-split results to a Google Drive) nor any
stored page lists it, so the few-shot tables show no published column for 2SFS.
"""
import torch
import torch.nn as nn

from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY

from trainers.clip_lora import vit_option
from trainers.common.encoder_surgery import block_layernorm_parameters, embed_dim
from trainers.common.encoder_trainer import EncoderTuningTrainer, check_encoders
from trainers.common.experiment import Method, register_method
from trainers.common.published import Published, register_published

PUBLISHED = {"source": "few-shot (all-to-all) tables not available here: see the module docstring"}
# Base-to-new (ViT-B/16, 16 shots, 11-dataset average: base, new, HM), as later work quotes it.
register_published("TwoStage", Published(
    "2SFS", "Farina et al., CVPR 2025, base-to-new average as quoted by the Awesome-Prompt-Adapter-Learning-for-"
            "VLMs list (zhengli97) and two later papers; the paper's own table was not read here",
    {"average": (85.55, 75.48, 80.20)}))


class SelectiveClassifier(nn.Module):
    """Class weights learned in stage 2, with the class names they belong to, so a test on
    other classes (base-to-new) uses the learned rows for known names only."""

    def __init__(self, classnames, dim):
        super().__init__()
        self.classnames = list(classnames)
        self.weight = nn.Parameter(torch.zeros(len(classnames), dim))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def get_extra_state(self):
        return {"classnames": self.classnames}

    def set_extra_state(self, state):
        self.classnames = list(state["classnames"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "weight")
        if saved is not None and saved.shape != self.weight.shape:  # trained on other classes
            self.weight = nn.Parameter(torch.empty_like(saved, device=self.weight.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@TRAINER_REGISTRY.register()
class TwoStage(EncoderTuningTrainer):
    CFG_NODE = "TWO_STAGE"
    LABEL = "2SFS"
    LOGIT_SCALE = None  # CLIP's own (exp of its learned logit scale)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.TWO_STAGE
        check_encoders(node.ENCODERS, "TRAINER.TWO_STAGE.ENCODERS")
        if not 0 < node.STAGE1_FRACTION < 1:
            raise ConfigError(f"TRAINER.TWO_STAGE.STAGE1_FRACTION = {node.STAGE1_FRACTION}; the share of the budget "
                              "for stage 1 must be strictly between 0 and 1 (official: 0.6)")

    def stage_budgets(self):
        total = self.total_iters()
        first = int(total * self.settings.STAGE1_FRACTION)
        if first < 1 or total - first < 1:
            raise ConfigError(f"a budget of {total} iterations split at TRAINER.TWO_STAGE.STAGE1_FRACTION "
                              f"{self.settings.STAGE1_FRACTION} leaves a stage without iterations; raise the budget "
                              "(ITERS_PER_SHOT or ITERS)")
        return [("features", first), ("classifier", total - first)]

    def signature(self):
        return dict(super().signature(), encoders=self.settings.ENCODERS)

    def adapt(self, clip_model):
        return block_layernorm_parameters(clip_model, check_encoders(self.settings.ENCODERS, ""))

    def register_models(self):
        (_, first), (_, second) = self.stage_budgets()
        optim, sched = self.make_optimizer(self.adapter.parameters(), first)
        self.register_model("adapter", self.adapter, optim, sched)
        dim = embed_dim(self.clip_model)
        self.classifier = SelectiveClassifier(self.classnames, dim).to(self.device)
        optim, sched = self.make_optimizer(self.classifier.parameters(), second)
        self.register_model("classifier", self.classifier, optim, sched)
        self.stage_models = {"features": "adapter", "classifier": "classifier"}

    def before_epoch(self):
        super().before_epoch()
        if self.stage == "classifier" and not bool(self.classifier.initialised):
            with torch.no_grad(), self.autocast():
                features = self.text_features()
            self.classifier.weight.data.copy_(features.float())
            self.classifier.initialised.fill_(True)
            print("Stage 2: encoders frozen, classifier initialised with the adapted text features")

    def train_logits(self, images):
        if self.stage == "features":
            return super().train_logits(images)
        with torch.no_grad():
            features = self.image_features(images)
        return self.logit_scale() * features.float() @ self.normalised_weight().t()

    def normalised_weight(self):
        w = self.classifier.weight
        return w / w.norm(dim=-1, keepdim=True)

    def eval_classifier(self):
        if not bool(self.classifier.initialised):  # evaluated before stage 2 (e.g. untrained)
            return self.text_features()
        known = {name: i for i, name in enumerate(self.classifier.classnames)}
        missing = [name for name in self.classnames if name not in known]
        text = dict(zip(missing, self.text_features(missing))) if missing else {}
        learned = self.normalised_weight()
        rows = [learned[known[name]] if name in known else text[name].float() for name in self.classnames]
        return torch.stack(rows)


register_method(Method(
    name="two_stage", trainer="TwoStage", label="2SFS", config=lambda dataset, shots: "vit_b16",
    options={"BACKBONE": vit_option()},
))
