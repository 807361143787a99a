"""CoCoOp: CoOp's context plus a Meta-Net that shifts it per image (instance-conditioned prompts).

Paper: Zhou, Yang, Loy, Liu, "Conditional Prompt Learning for Vision-Language Models", CVPR 2022.
Official code: github.com/KaiyangZhou/CoOp, trainers/cocoop.py and configs/trainers/CoCoOp/ at
commit 1fbb1a6f0eee67d45302bbab6c01192b06412a13 (read for every setting below).

Per image x: bias = MetaNet(f(x) / |f(x)|), MetaNet = Linear(vis_dim, vis_dim // 16) -> ReLU ->
Linear(vis_dim // 16, ctx_dim); every context vector becomes ctx_m + bias; every class prompt
[SOS] [ctx + bias] [name .] [EOT] goes through CLIP's frozen text tower for that image. Only ctx
and the Meta-Net train (one module, "prompt_learner", whose state-dict keys are the official ones:
official checkpoints load). Settings of the official base-to-new config
vit_b16_c4_ep10_batch1_ctxv1: 4 context tokens initialised from "a photo of a", batch 1, SGD
LR 0.002, cosine over 10 epochs, 1 warm-up epoch at constant 1e-5, fp16 CLIP (fp32 on a CPU).
Random draws in the official order: CLIP built (its init draws), the context (normal, std 0.02,
only without CTX_INIT), then the Meta-Net's two Linear layers, all on the CPU.

Differences from the official code, and why:
- The context and the Meta-Net keep fp32 parameters and are cast to CLIP's dtype at use (the
  official code makes them fp16 under PREC fp16): as in our CoOp, fp16 parameters lose small SGD
  updates to rounding. On a CPU, where every run is fp32, nothing differs.
- With CTX_INIT the context length is the number of BPE tokens of the words (the official code
  counts words; the same for "a photo of a").
- Speed, same outputs up to float rounding: the official code runs all 77 positions of every
  class prompt once per image in a Python loop. Here each image's SOS + context runs once and
  every class then runs only its own tokens up to its EOT (attending to that image's context),
  the images of a batch together (TRAINER.COCOOP.SHARED_CONTEXT; TRUNCATE_TEXT False runs the
  official per-image loop). benchmarks/cocoop.py measures both.

Published ViT-B/16 base-to-new results (paper Table 1, base / new / HM, %):
  average 80.47 / 71.69 / 75.83; ImageNet 75.98 / 70.43 / 73.10; Caltech101 97.96 / 93.81 / 95.84;
  OxfordPets 95.20 / 97.69 / 96.43; StanfordCars 70.49 / 73.59 / 72.01; Flowers102 94.87 / 71.75 /
  81.71; Food101 90.70 / 91.29 / 90.99; FGVCAircraft 33.41 / 23.71 / 27.74; SUN397 79.74 / 76.86 /
  78.27; DTD 77.01 / 56.00 / 64.85; EuroSAT 87.49 / 60.04 / 71.21; UCF101 82.33 / 73.45 / 77.64.
Cross-dataset (Table 2): ImageNet 71.02, target average 65.74.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from dassl.engine import TRAINER_REGISTRY

from trainers.common.classifier import l2_normalize
from trainers.common.experiment import Method, backbone_option, register_method
from trainers.common.published import Published, register_published, rows, xd_rows
from trainers.coop import CoOp, PromptClassifier

PUBLISHED_BASE2NEW = rows([
    (80.47, 71.69, 75.83), (75.98, 70.43, 73.10), (97.96, 93.81, 95.84), (95.20, 97.69, 96.43),
    (70.49, 73.59, 72.01), (94.87, 71.75, 81.71), (90.70, 91.29, 90.99), (33.41, 23.71, 27.74),
    (79.74, 76.86, 78.27), (77.01, 56.00, 64.85), (87.49, 60.04, 71.21), (82.33, 73.45, 77.64)])
PUBLISHED_XD = xd_rows([71.02, 94.43, 90.14, 65.32, 71.88, 86.06, 22.94, 67.36, 45.73, 45.37, 68.21])
register_published("CoCoOp", Published(
    "CoCoOp", "Zhou et al., Conditional Prompt Learning (CoCoOp), CVPR 2022, Tables 1 and 2",
    PUBLISHED_BASE2NEW, PUBLISHED_XD))


def coop_keys(cocoop):
    """CoCoOp's keys as the CoOp prompt learner reads them: one context shared by all classes,
    class name at the end."""
    return CN(dict(N_CTX=cocoop.N_CTX, CTX_INIT=cocoop.CTX_INIT, CSC=False, CLASS_TOKEN_POSITION="end",
                   TRUNCATE_TEXT=cocoop.TRUNCATE_TEXT, SHARED_CONTEXT=cocoop.SHARED_CONTEXT,
                   GRAD_CHECKPOINT=False))


class ConditionalPromptClassifier(PromptClassifier):
    """CoOp's prompts and text paths, the context shifted per image by the Meta-Net."""

    def __init__(self, cfg, classnames, clip_model):
        super().__init__(cfg, classnames, clip_model, coop_keys(cfg.TRAINER.COCOOP))
        vis_dim = clip_model.embed_dim
        ctx_dim = clip_model.text_tower.width
        # Built on the CPU right after the context: the official order of random draws.
        self.prompt_learner.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ]))
        self.eval_sequences = cfg.TRAINER.COCOOP.EVAL_SEQUENCES

    def conditioned_context(self, image_features):
        """(B, n_ctx, width): the shared context plus each image's Meta-Net bias."""
        learner = self.prompt_learner
        bias = learner.meta_net(l2_normalize(image_features.float()))
        return learner.ctx.unsqueeze(0) + bias.unsqueeze(1)

    def class_features_per_image(self, ctx):
        """(B, n_cls, D): every class prompt after each image's context."""
        learner = self.prompt_learner
        ctx = ctx.to(learner.dtype)
        n_images = ctx.shape[0]
        if self.text_path == "shared-context":
            sos = learner.token_prefix[:1].expand(n_images, -1, -1)
            groups = self.shared_context_groups(ctx.is_cuda)
            return self.text_encoder.encode_shared_prefix(torch.cat([sos, ctx], dim=1), groups, learner.n_cls)
        tokens = learner.tokenized_prompts
        if self.text_path == "full":  # the official loop: one image at a time, all 77 positions
            return torch.stack([self.text_encoder(self._prompts(c.unsqueeze(0))[0], tokens) for c in ctx])
        prompts = self._prompts(ctx).flatten(0, 1)  # (B * n_cls, L, width), image-major
        return self.text_encoder(prompts, tokens.repeat(n_images, 1)).view(n_images, learner.n_cls, -1)

    def _prompts(self, ctx):
        """(B, n_cls, L, width) prompts of B contexts."""
        learner = self.prompt_learner
        n_images, n_cls = ctx.shape[0], learner.n_cls
        return torch.cat([learner.token_prefix.unsqueeze(0).expand(n_images, -1, -1, -1),
                          ctx.unsqueeze(1).expand(-1, n_cls, -1, -1),
                          learner.token_suffix.unsqueeze(0).expand(n_images, -1, -1, -1)], dim=2)

    def forward(self, image_features):
        ctx = self.conditioned_context(image_features)
        # Without gradients (test), images go in chunks that bound the memory of one pass.
        step = len(ctx) if torch.is_grad_enabled() else max(1, self.eval_sequences // self.prompt_learner.n_cls)
        text = torch.cat([self.class_features_per_image(ctx[i:i + step]) for i in range(0, len(ctx), step)])
        image = l2_normalize(image_features.float())
        return self.logit_scale.exp().float() * torch.einsum("bd,bcd->bc", image, l2_normalize(text.float()))


@TRAINER_REGISTRY.register()
class CoCoOp(CoOp):
    """Conditional Context Optimization (Zhou et al., CVPR 2022)."""
    KEYS = "COCOOP"

    def build_classifier(self, classnames):
        return ConditionalPromptClassifier(self.cfg, classnames, self.clip_model)


register_method(Method(
    name="cocoop", trainer="CoCoOp", label="CoCoOp",
    config=lambda dataset, shots: "vit_b16_c4_ep10_batch1_ctxv1",
    options={"BACKBONE": backbone_option(default="ViT-B/16")},
))
