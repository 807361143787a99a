"""PromptSRC: deep vision and language prompts that regulate themselves against frozen CLIP.

Paper: Khattak, Wasim et al., "Self-regulating Prompts: Foundational Model Adaptation without
Forgetting", ICCV 2023 (arXiv 2307.06948). Official code: github.com/muzairkhattak/PromptSRC,
commit bb95c77b634d63488f2cad81ff4a72d53bdd06d5 (trainers/promptsrc.py, clip/model.py,
trainers/imagenet_templates.py, configs/trainers/PromptSRC/).

What it computes (as the official code does):
- Independent prompts (no coupling): text context of N_CTX_TEXT=4 tokens initialised from
  "a photo of a", replaced again in text layers 1..PROMPT_DEPTH_TEXT-1; N_CTX_VISION=4 image
  tokens appended after the patch tokens (before ln_pre), replaced in image layers
  1..PROMPT_DEPTH_VISION-1 (9 of 12 layers each for ViT-B/16).
- Loss = cross-entropy + self-regulating consistency with the frozen model:
  TEXT_LOSS_WEIGHT (25) x L1(prompted class text features, frozen features averaged over the 60
  ImageNet templates below: textual diversity), IMAGE_LOSS_WEIGHT (10) x L1(prompted image
  features, frozen image features), and KL(frozen logits || prompted logits) summed over the
  batch and divided by the logits' element count. Features are L2-normalised; the frozen text
  features are computed once, in fp32, and normalised after averaging.
- Gaussian prompt aggregation (GPA): after every epoch e (1..MAX_EPOCH) the prompts are added
  to a running sum with weight N(e; GPA_MEAN, GPA_STD) normalised over the epochs; after the
  last epoch the prompts become that sum. The sum lives in the saved module (buffers `gpa.*`),
  so a run resumed after a kill aggregates exactly as an uninterrupted one.
- Random draws in the official order: the official code builds its prompts into CLIP's modules,
  drawing them in the middle of CLIP's construction (trainers/common/deep_prompts.py,
  `prompt_draws_during_build`), then builds two more frozen copies of CLIP, whose random
  initialisation advances the random stream (replayed here without keeping the copies).
- Precision: fp16 on CUDA as released (the text context in fp16, the other prompts in fp32);
  fp32 on CPU.

Settings that differ, and why:
- The official GPA sums the whole model's state, frozen CLIP weights included; in fp16 that sum
  of weighted copies perturbs the frozen weights by rounding (sum of w_e * W is not W). Here only
  the learned prompts are aggregated and CLIP stays exact, so checkpoints hold the prompts alone.
- The frozen image features come from the same image encoder with the prompts switched off
  (the official code loads a second copy of CLIP for them): the same weights, the same values.
- The text tower runs each prompt up to its last EOT instead of all 77 positions (the same
  features up to float rounding); test-time prompts are encoded once per evaluation.

Published base-to-new results (ViT-B/16, 16 shots, 3 seeds), paper Table 1, and cross-dataset, Table 2:
`register_published` below.
Configs: base-to-new `vit_b16_c2_ep20_batch4_4+4ctx`; ImageNet -> cross-dataset and domain
generalization `..._cross_datasets` (depth 3, GPA mean 6, std 10); few-shot
`vit_b16_c2_ep50_batch4_4+4ctx_few_shot` (50 epochs; GPA mean 45, std 5 instead of 30, 30 for five
datasets: `..._few_shot_gpa45`).
"""
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import load_pretrained_weights

from trainers.common.deep_prompts import (ClassPrompts, DeepPromptTrainer, PromptedModule, context_init,
                                          draw_missing_prompts, prompt_draws_during_build, prompted,
                                          replay_clip_builds, text_layer_hook)
from trainers.common.experiment import Method, backbone_option, register_method
from trainers.common.published import Published, register_published, rows, xd_rows
from trainers.common.text_encoder import TextEncoder

register_published("PromptSRC", Published(
    "PromptSRC", "Khattak et al., Self-regulating Prompts (PromptSRC), ICCV 2023, Tables 1 and 2",
    base2new=rows([(84.26, 76.10, 79.97), (77.60, 70.73, 74.01), (98.10, 94.03, 96.02),
                   (95.33, 97.30, 96.30), (78.27, 74.97, 76.58), (98.07, 76.50, 85.95),
                   (90.67, 91.53, 91.10), (42.73, 37.87, 40.15), (82.67, 78.47, 80.52),
                   (83.37, 62.97, 71.75), (92.90, 73.90, 82.32), (87.10, 78.80, 82.74)]),
    xd=xd_rows([71.27, 93.60, 90.25, 65.70, 70.25, 86.15, 23.90, 67.10, 46.87, 45.50, 68.75])))

# Config per protocol. Few-shot: GPA mean 30, std 30, except mean 45, std 5 for these five datasets
# (the official config's note), in a config file of its own.
CONFIGS = {"base2new": "vit_b16_c2_ep20_batch4_4+4ctx", "xd": "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
           "fewshot": "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"}
FEWSHOT_GPA45 = ("stanford_cars", "oxford_flowers", "fgvc_aircraft", "dtd", "eurosat")


# The official textual-diversity ensemble: 60 of CLIP's 80 ImageNet templates, in its order.
TEMPLATES = (
    "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.", "a tattoo of a {}.",
    "the embroidered {}.", "a photo of a hard to see {}.", "a bright photo of a {}.", "a photo of a clean {}.",
    "a photo of a dirty {}.", "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.",
    "the plastic {}.", "a photo of the cool {}.", "a close-up photo of a {}.",
    "a black and white photo of the {}.", "a painting of the {}.", "a painting of a {}.",
    "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.",
    "a sketch of the {}.", "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
)


def gpa_weights(mean, std, epochs):
    """Weight of epoch e = 1..epochs: the Gaussian density at e, normalised to sum 1."""
    if std <= 0:
        raise ConfigError(f"TRAINER.PROMPTSRC.GPA_STD = {std}; needs to be positive")
    density = np.array([np.exp(-0.5 * ((e - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi))
                        for e in range(1, epochs + 1)])
    return density / sum(density)


class VLPromptLearner(nn.Module):
    def __init__(self, cfg, classnames, clip_model, drawn):
        super().__init__()
        node = cfg.TRAINER.PROMPTSRC
        if node.PROMPT_DEPTH_TEXT < 1:
            raise ConfigError(f"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT = {node.PROMPT_DEPTH_TEXT}; needs at least 1")
        dtype = clip_model.dtype
        ctx_vectors, prefix_text = context_init(clip_model, node.N_CTX_TEXT, node.CTX_INIT, dtype,
                                                "TRAINER.PROMPTSRC")
        n_ctx = ctx_vectors.shape[0]
        print(f'PromptSRC: initial text context "{prefix_text}"; {n_ctx} text and {node.N_CTX_VISION} image context '
              f"tokens; depth {node.PROMPT_DEPTH_TEXT} (text), {node.PROMPT_DEPTH_VISION} (image)")
        self.ctx = nn.Parameter(ctx_vectors)
        self.vision_ctx = None if drawn["vision_shallow"] is None else nn.Parameter(drawn["vision_shallow"])
        self.text_deep = nn.ParameterDict({str(k): nn.Parameter(t) for k, t in drawn["text"].items()})
        self.vision_deep = nn.ParameterDict({str(k): nn.Parameter(t) for k, t in drawn["vision"].items()})
        self.prompts = ClassPrompts(clip_model, classnames, prefix_text, n_ctx, dtype)

    def forward(self):
        """(class prompts, image tokens for ln_pre or None, {layer: text prompts}, {layer: image prompts})."""
        return (self.prompts(self.ctx), self.vision_ctx, {int(k): p for k, p in self.text_deep.items()},
                {int(k): p for k, p in self.vision_deep.items()})


class PromptAggregate(nn.Module):
    """Running Gaussian-weighted sum of the learned prompts (saved with them)."""

    def __init__(self, learner):
        super().__init__()
        for name, param in learner.named_parameters():
            self.register_buffer(name.replace(".", "__"), torch.zeros_like(param.detach()))

    def add(self, learner, weight):
        for name, param in learner.named_parameters():
            total = getattr(self, name.replace(".", "__"))
            total.copy_(total + param.detach() * float(weight))

    def load_into(self, learner):
        with torch.no_grad():
            for name, param in learner.named_parameters():
                param.copy_(getattr(self, name.replace(".", "__")))


class PromptSRCModel(PromptedModule):
    def __init__(self, prompt_learner):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.gpa = PromptAggregate(prompt_learner)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Official checkpoints keep the deeper prompts inside CLIP's blocks: renamed to ours.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest, new = key[len(prefix):].split("."), None
            if rest[0] == "image_encoder" and rest[1:] == ["VPT"]:
                new = "prompt_learner.vision_ctx"
            elif rest[0] in ("image_encoder", "text_encoder") and rest[-1] == "VPT_shallow" and len(rest) == 5:
                new = f"prompt_learner.{'vision' if rest[0] == 'image_encoder' else 'text'}_deep.{rest[3]}"
            if new:
                state_dict[prefix + new] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@TRAINER_REGISTRY.register()
class PromptSRC(DeepPromptTrainer):
    """Self-regulating prompts (Khattak, Wasim et al., ICCV 2023)."""

    method = "PromptSRC"
    prec_key = "TRAINER.PROMPTSRC"

    def build_model(self):
        cfg = self.cfg
        node = cfg.TRAINER.PROMPTSRC
        self.gpa_weights = gpa_weights(node.GPA_MEAN, node.GPA_STD, cfg.OPTIM.MAX_EPOCH)
        plan = dict(vision_shallow=node.PROMPT_DEPTH_VISION != 0, vision_depth=node.PROMPT_DEPTH_VISION,
                    text_depth=node.PROMPT_DEPTH_TEXT, n_vision=node.N_CTX_VISION, n_text=node.N_CTX_TEXT)
        with prompt_draws_during_build(**plan) as drawn:
            self.load_prompted_clip()
        drawn = draw_missing_prompts(drawn, self.text_tower, self.vision_tower, **plan)
        print("Building PromptSRC prompts (CLIP frozen)")
        learner = VLPromptLearner(cfg, self.dm.dataset.classnames, self.clip_model, drawn)
        replay_clip_builds(self.clip_model, 2)
        self.model = PromptSRCModel(learner).to(self.device)
        # truncating after EOT is exact only for causal text towers (not SigLIP-style ones)
        self.text_encoder = TextEncoder(self.clip_model, truncate=self.clip_model.text_tower.causal)
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(self.model, cfg.MODEL.INIT_WEIGHTS)
        optim = build_optimizer(self.model, cfg.OPTIM)
        sched = build_lr_scheduler(optim, cfg.OPTIM)
        self.register_model("VLPromptLearner", self.model, optim, sched)
        self.eval_prompts = None
        self.frozen_text_features = None

    @torch.no_grad()
    def frozen_class_features(self):
        """Frozen CLIP's class features averaged over the templates, in fp32 (normalised)."""
        names = [name.replace("_", " ") for name in self.dm.dataset.classnames]
        backbone = self.clip_model
        backbone.cast("fp32")
        try:
            per_template = [backbone.encode_text(backbone.tokenize([t.format(n) for n in names]).to(self.device))
                            for t in TEMPLATES]
        finally:
            backbone.cast(self.precision)  # fp16: back to the released half weights (an exact round trip)
        return F.normalize(torch.stack(per_template, dim=1).mean(dim=1), dim=-1)

    def before_train(self):
        self.frozen_text_features = self.frozen_class_features()
        super().before_train()

    def text_hook(self, deep_text):
        return text_layer_hook(deep_text, start=self.clip_model.text_start, batch_first=self.text_tower.batch_first)

    def prompted_features(self, images, parts=None):
        learner = self.model.prompt_learner
        if parts is None:
            prompts, vision_ctx, deep_text, deep_vision = learner()
            text = self.text_encoder(prompts, learner.prompts.tokens, self.text_hook(deep_text))
            parts = (F.normalize(text, dim=-1), vision_ctx, deep_vision)
        text_features, vision_ctx, deep_vision = parts
        with prompted(self.vision_tower, append=vision_ctx, replace=deep_vision):
            image_features = self.clip_model.encode_image(self.count_image_forwards(images))
        return F.normalize(image_features, dim=-1), text_features

    def model_inference(self, input):
        with self.autocast():
            parts = self.eval_prompts if not torch.is_grad_enabled() else None
            image_features, text_features = self.prompted_features(input, parts)
            return self.clip_model.logit_scale.exp() * image_features @ text_features.t()

    def test(self, split=None):
        with torch.no_grad():  # the prompts do not change during an evaluation: encoded once
            learner = self.model.prompt_learner
            prompts, vision_ctx, deep_text, deep_vision = learner()
            text = self.text_encoder(prompts, learner.prompts.tokens, self.text_hook(deep_text))
            self.eval_prompts = (F.normalize(text, dim=-1), vision_ctx, deep_vision)
        try:
            return super().test(split)
        finally:
            self.eval_prompts = None

    def forward_backward(self, batch):
        node = self.cfg.TRAINER.PROMPTSRC
        image, label = self.parse_batch_train(batch)
        logit_scale = self.clip_model.logit_scale.exp()
        with self.autocast():
            image_features, text_features = self.prompted_features(image)
            logits = logit_scale * image_features @ text_features.t()
            loss_ce = F.cross_entropy(logits, label)
            with torch.no_grad():
                frozen_image = F.normalize(self.clip_model.encode_image(self.count_image_forwards(image)), dim=-1)
                frozen_text = self.frozen_text_features
                frozen_logits = logit_scale * frozen_image @ frozen_text.to(frozen_image.dtype).t()
            loss_text = F.l1_loss(text_features.float(), frozen_text.float()) * node.TEXT_LOSS_WEIGHT
            loss_image = F.l1_loss(image_features, frozen_image) * node.IMAGE_LOSS_WEIGHT
            loss_logits = F.kl_div(F.log_softmax(logits, dim=1), F.log_softmax(frozen_logits, dim=1),
                                   reduction="sum", log_target=True) / logits.numel()
            loss = loss_ce + (loss_logits + loss_text + loss_image)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
            # One epoch done: add the prompts to the aggregate; after the last, use the aggregate.
            self.model.gpa.add(self.model.prompt_learner, self.gpa_weights[self.epoch])
            if self.epoch + 1 == self.max_epoch:
                print("PromptSRC: the prompts become their Gaussian-weighted aggregate over the epochs")
                self.model.gpa.load_into(self.model.prompt_learner)
        return {"loss": loss.item(), "loss_ce": loss_ce.item(), "acc": compute_accuracy(logits, label)[0].item()}


def promptsrc_config(dataset, shots):
    """The few-shot protocol's config for `dataset` (the default protocol of the planner and
    scripts); base-to-new and cross-dataset runs name theirs from `CONFIGS`."""
    return CONFIGS["fewshot"] + ("_gpa45" if dataset in FEWSHOT_GPA45 else "")


register_method(Method(name="promptsrc", trainer="PromptSRC", label="PromptSRC", config=promptsrc_config,
                       options={"BACKBONE": backbone_option(default="ViT-B/16", vit_only=True)}))
