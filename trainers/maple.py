"""MaPLe: multi-modal prompt learning, prompts in the first J layers of both CLIP encoders.

Paper: Khattak et al., "MaPLe: Multi-modal Prompt Learning", CVPR 2023 (arXiv 2210.03117).
Official code: github.com/muzairkhattak/multimodal-prompt-learning, commit
69bce21ae8eda80ad6187534b2dce09cf6c59e17 (trainers/maple.py, clip/model.py, configs/trainers/MaPLe/).

What it computes (as the official code does):
- Text: the prompt "a photo of a <class>." with its first N_CTX=2 word embeddings ("a photo")
  replaced by the learned context; in text layers 1..J-1 those positions are replaced again, by
  the learned prompts of that layer (`compound_prompts_text`).
- Image: the context projected to the image width (`proj`, a linear layer) is appended after the
  patch tokens (before ln_pre); in image layers 1..J-1 those tokens are replaced by the layer's
  text prompts projected by the layer's own linear map (`compound_prompt_projections`), which
  is what couples the two modalities. J = PROMPT_DEPTH (9 of 12 layers for ViT-B/16).
- Loss: cross-entropy of CLIP's cosine logits. SGD, cosine schedule, one constant warm-up epoch.
- Random draws in the official order (after CLIP is built): the random context if CTX_INIT is
  not used, `proj`'s initialisation, the J-1 text prompts (N(0, 0.02)), then one linear layer
  whose J-1 copies are the projections (all start identical, as in the official code).
- Precision: fp16 on CUDA as released (the context and `proj` in fp16, the deeper prompts and
  their projections in fp32, cast to fp16 where they enter the encoders); fp32 on CPU.

Settings that differ, and why:
- The official code hard-codes the widths of ViT-B/16 (512 text, 768 image); here they are read
  from the loaded CLIP, so every ViT (and the tiny one pretrained here) works. Prompts deeper
  than the encoder's layer count are created (same draws) but unused, as in the official code.
- Under fp32 and amp the official code keeps `proj` in fp16 and fails; here it follows CLIP's
  dtype.
- The text tower runs each prompt up to its last EOT instead of all 77 positions (causal
  attention: the same features up to float rounding), and at test time the prompts are
  encoded once per evaluation instead of once per batch (same values).
- Checkpoints hold the prompt learner only; official checkpoints (the whole model) load too.

Published base-to-new results (ViT-B/16, 16 shots, base half of the classes, 3 seeds), paper
Table 1, and cross-dataset, Table 2: `register_published` below (base, new, HM). Cross-dataset (ImageNet -> others) and
domain generalization use the `_cross_datasets` config (J=3, LR 0.0026, 2 epochs).
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_pretrained_weights

from trainers.common.deep_prompts import (ClassPrompts, DeepPromptTrainer, PromptedModule, context_init, prompted,
                                          text_layer_hook)
from trainers.common.experiment import Method, backbone_option, register_method
from trainers.common.published import Published, register_published, rows, xd_rows
from trainers.common.text_encoder import TextEncoder

# MaPLe paper (CVPR 2023): Table 1, base-to-new on ViT-B/16, (base, new, HM) per dataset; Table 2, cross-dataset.
register_published("MaPLe", Published(
    "MaPLe", "Khattak et al., MaPLe: Multi-modal Prompt Learning, CVPR 2023, Tables 1 and 2",
    base2new=rows([(82.28, 75.14, 78.55), (76.66, 70.54, 73.47), (97.74, 94.36, 96.02),
                   (95.43, 97.76, 96.58), (72.94, 74.00, 73.47), (95.92, 72.46, 82.56),
                   (90.71, 92.05, 91.38), (37.44, 35.61, 36.50), (80.82, 78.70, 79.75),
                   (80.36, 59.18, 68.16), (94.07, 73.23, 82.35), (83.00, 78.66, 80.77)]),
    xd=xd_rows([70.72, 93.53, 90.49, 65.57, 72.23, 86.20, 24.74, 67.01, 46.49, 48.06, 68.69])))


class MultiModalPromptLearner(nn.Module):
    """The learned prompts of both encoders (names as in the official code, so its
    checkpoints load)."""

    def __init__(self, cfg, classnames, clip_model, vision_width, precision):
        super().__init__()
        node = cfg.TRAINER.MAPLE
        depth = node.PROMPT_DEPTH
        if depth < 1:
            raise ConfigError(f"TRAINER.MAPLE.PROMPT_DEPTH = {depth}; needs at least 1 (1: prompts in the first "
                              f"layer only)")
        dtype = clip_model.dtype
        width = clip_model.text_tower.width
        ctx_vectors, prefix_text = context_init(clip_model, node.N_CTX, node.CTX_INIT, dtype, "TRAINER.MAPLE")
        n_ctx = ctx_vectors.shape[0]
        print(f'MaPLe: initial context "{prefix_text}", {n_ctx} context tokens, prompt depth {depth}')
        self.proj = nn.Linear(width, vision_width)
        if precision == "fp16":
            self.proj.half()
        self.ctx = nn.Parameter(ctx_vectors)
        self.compound_prompts_text = nn.ParameterList(
            [nn.Parameter(torch.empty(n_ctx, width)) for _ in range(depth - 1)])
        for prompt in self.compound_prompts_text:
            nn.init.normal_(prompt, std=0.02)
        layer = nn.Linear(width, vision_width)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(layer) for _ in range(depth - 1)])
        self.prompts = ClassPrompts(clip_model, classnames, prefix_text, n_ctx, dtype)

    def forward(self):
        """(class prompts (n_cls, 77, W), image tokens for ln_pre, {layer: text prompts},
        {layer: image prompts})."""
        deep_text = {k + 1: p for k, p in enumerate(self.compound_prompts_text)}
        deep_vision = {k + 1: layer(p) for k, (layer, p) in
                       enumerate(zip(self.compound_prompt_projections, self.compound_prompts_text))}
        return self.prompts(self.ctx), self.proj(self.ctx), deep_text, deep_vision


class MaPLeModel(PromptedModule):
    def __init__(self, prompt_learner):
        super().__init__()
        self.prompt_learner = prompt_learner


@TRAINER_REGISTRY.register()
class MaPLe(DeepPromptTrainer):
    """Multi-modal Prompt Learning (Khattak et al., CVPR 2023)."""

    method = "MaPLe"
    prec_key = "TRAINER.MAPLE"

    def build_model(self):
        cfg = self.cfg
        self.load_prompted_clip()
        print("Building MaPLe prompts (CLIP frozen)")
        learner = MultiModalPromptLearner(cfg, self.dm.dataset.classnames, self.clip_model,
                                          self.vision_tower.width, self.precision)
        self.model = MaPLeModel(learner).to(self.device)
        # truncating after EOT is exact only for causal text towers (not SigLIP-style ones)
        self.text_encoder = TextEncoder(self.clip_model, truncate=self.clip_model.text_tower.causal)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model, cfg.MODEL.INIT_WEIGHTS)
        optim = build_optimizer(self.model, cfg.OPTIM)
        sched = build_lr_scheduler(optim, cfg.OPTIM)
        self.register_model("MultiModalPromptLearner", self.model, optim, sched)
        self.eval_text_features = None

    def text_hook(self, deep_text):
        return text_layer_hook(deep_text, start=self.clip_model.text_start, batch_first=self.text_tower.batch_first)

    def features(self, images):
        """Prompted (image features, class text features), both normalised."""
        learner = self.model.prompt_learner
        if self.eval_text_features is not None and not torch.is_grad_enabled():
            text_features, image_tokens, deep_vision = self.eval_text_features
        else:
            prompts, image_tokens, deep_text, deep_vision = learner()
            text_features = self.text_encoder(prompts, learner.prompts.tokens, self.text_hook(deep_text))
            text_features = F.normalize(text_features, dim=-1)
        with prompted(self.vision_tower, append=image_tokens, replace=deep_vision):
            image_features = self.clip_model.encode_image(self.count_image_forwards(images))
        return F.normalize(image_features, dim=-1), text_features

    def model_inference(self, input):
        with self.autocast():
            image_features, text_features = self.features(input)
            return self.clip_model.logit_scale.exp() * image_features @ text_features.t()

    def test(self, split=None):
        with torch.no_grad():  # the prompts do not change during an evaluation: encoded once
            learner = self.model.prompt_learner
            learner.eval()
            prompts, image_tokens, deep_text, deep_vision = learner()
            text = self.text_encoder(prompts, learner.prompts.tokens, self.text_hook(deep_text))
            self.eval_text_features = (F.normalize(text, dim=-1), image_tokens, deep_vision)
        try:
            return super().test(split)
        finally:
            self.eval_text_features = None

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model_inference(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}


# Config per protocol (MaPLe released none for few-shot: the base-to-new one is used).
CONFIGS = {"base2new": "vit_b16_c2_ep5_batch4_2ctx", "xd": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
           "fewshot": "vit_b16_c2_ep5_batch4_2ctx"}

register_method(Method(name="maple", trainer="MaPLe", label="MaPLe", config=lambda dataset, shots: CONFIGS["fewshot"],
                       options={"BACKBONE": backbone_option(default="ViT-B/16", vit_only=True)}))
