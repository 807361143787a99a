"""KgCoOp: CoOp plus a loss that keeps the learned class text features near the hand-crafted ones.

Paper: Yao, Zhang, Xu, "Visual-Language Prompt Tuning with Knowledge-guided Context
Optimization", CVPR 2023. Official code: github.com/htyao89/KgCoOp, KgCoOp/trainers/kgcoop.py at
commit 98d11b83f42e41b4fd5c907c8ceb8ab4a6de6ace, its configs (KgCoOp/configs/trainers/KgCoOp/)
and scripts (base2new_train.sh, xd_train.sh), read for every setting below.

Loss = cross-entropy + W * (1 - mean_c cos(t_c, t0_c)), t_c the learned prompt's class feature,
t0_c CLIP's feature of the dataset's hand-crafted prompt (computed once). Official settings
(vit_b16_ep100_ctxv1 and the scripts): 4 context tokens from "a photo of a", one context for all
classes, class name at the end, W 8.0, batch 128, SGD LR 0.002, cosine over 100 epochs, 1 warm-up
epoch at constant 1e-5, fp16 CLIP (fp32 on a CPU). The hand-crafted template is the dataset's
CLIP template, except DTD: "a photo of a {}, a type of texture.".

Random draws in the official order: CLIP built, the context (only without CTX_INIT), then the
official code's unused modules, which move the random stream that the data loaders and
augmentations read afterwards: a (1, 512) normal draw, a second CLIP build (it encodes the
hand-crafted prompts), Linear(512, 512), and the two bias-free Linear layers of a 512 -> 128 ->
512 adapter. Those draws are made here in the same order and their results thrown away.

Differences from the official code, and why:
- The official config says CTX_INIT: True and the code then uses the words "a photo of a";
  here CTX_INIT holds those words (the key is a string in this toolkit).
- The context keeps an fp32 parameter (as in our CoOp); the official fp16 parameter loses
  small SGD updates to rounding. On a CPU every run is fp32 and nothing differs.
- The hand-crafted features come from the second CLIP in its own precision, as officially
  (fp16 on CUDA; fp32 on a CPU, where fp16 kernels are missing).
- Datasets the official code has no template for (e.g. the demo's) use the dataset's CLIP
  template instead of failing.

Published ViT-B/16 base-to-new results (paper Table 1, base / new / HM, %):
  average 80.73 / 73.60 / 77.00; ImageNet 75.83 / 69.96 / 72.78; Caltech101 97.72 / 94.39 / 96.03;
  OxfordPets 94.65 / 97.76 / 96.18; StanfordCars 71.76 / 75.04 / 73.36; Flowers102 95.00 / 74.73 /
  83.65; Food101 90.50 / 91.70 / 91.09; FGVCAircraft 36.21 / 33.55 / 34.83; SUN397 80.29 / 76.53 /
  78.36; DTD 77.55 / 54.99 / 64.35; EuroSAT 85.64 / 64.34 / 73.48; UCF101 82.89 / 76.67 / 79.65.
Cross-dataset (Table 3): ImageNet 70.66, target average 65.51.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from dassl.engine import TRAINER_REGISTRY
from dassl.metrics import compute_accuracy

from trainers.common.classifier import class_features, cosine_logits, l2_normalize
from trainers.common.backbone import load_backbone
from trainers.common.experiment import Method, backbone_option, register_method
from trainers.common.published import Published, register_published, rows, xd_rows
from trainers.common.templates import dataset_template
from trainers.coop import CoOp, PromptClassifier

PUBLISHED_BASE2NEW = rows([
    (80.73, 73.60, 77.00), (75.83, 69.96, 72.78), (97.72, 94.39, 96.03), (94.65, 97.76, 96.18),
    (71.76, 75.04, 73.36), (95.00, 74.73, 83.65), (90.50, 91.70, 91.09), (36.21, 33.55, 34.83),
    (80.29, 76.53, 78.36), (77.55, 54.99, 64.35), (85.64, 64.34, 73.48), (82.89, 76.67, 79.65)])
PUBLISHED_XD = xd_rows([70.66, 93.92, 89.83, 65.41, 70.01, 86.36, 22.51, 66.16, 46.35, 46.04, 68.50])
register_published("KgCoOp", Published(
    "KgCoOp", "Yao et al., Knowledge-guided Context Optimization (KgCoOp), CVPR 2023, Tables 1 and 3",
    PUBLISHED_BASE2NEW, PUBLISHED_XD))

TEMPLATES = {"DescribableTextures": "a photo of a {}, a type of texture."}  # the others: CLIP's


def hand_crafted_template(dataset_name):
    return TEMPLATES.get(dataset_name, dataset_template(dataset_name))


def _official_unused_draws():
    """The official prompt learner's draws before its second CLIP: a (1, 512) context bias."""
    nn.init.normal_(torch.empty(1, 512), std=0.02)


def _official_unused_modules():
    """Its Meta-Net Linear(512, 512), then its adapter (512 -> 128 -> 512, no biases)."""
    nn.Linear(512, 512)
    nn.Linear(512, 128, bias=False)
    nn.Linear(128, 512, bias=False)


class KnowledgeGuidedClassifier(PromptClassifier):
    """CoOp's classifier plus the hand-crafted class features the loss pulls towards."""

    def __init__(self, cfg, classnames, clip_model, device):
        super().__init__(cfg, classnames, clip_model)
        _official_unused_draws()
        print("Encoding the hand-crafted prompts with a second CLIP (the official order of random draws)")
        reference = load_backbone(cfg)
        if torch.device(device).type != "cuda":
            reference.float()  # fp16 kernels are CUDA-only
        reference.to(device)
        template = hand_crafted_template(cfg.DATASET.NAME)
        print(f"Hand-crafted prompt: {template!r}")
        features = class_features(reference, classnames, template)  # fp32, normalised
        del reference
        self.register_buffer("hand_crafted", features, persistent=False)
        _official_unused_modules()


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    """Knowledge-guided Context Optimization (Yao et al., CVPR 2023)."""

    def build_classifier(self, classnames):
        return KnowledgeGuidedClassifier(self.cfg, classnames, self.clip_model, self.device)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        image_features = self.image_features(image)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.scaler is not None):
            text = self.classifier.class_features()
            output = cosine_logits(image_features, text, self.classifier.logit_scale)
            similarity = F.cosine_similarity(l2_normalize(text.float()), self.classifier.hand_crafted,
                                             dim=1, eps=1e-7)
            loss = F.cross_entropy(output, label) + self.cfg.TRAINER.COOP.W * (1.0 - similarity.mean())
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary


register_method(Method(
    name="kgcoop", trainer="KgCoOp", label="KgCoOp",
    config=lambda dataset, shots: "vit_b16_ep100_ctxv1",
    options={"BACKBONE": backbone_option(default="ViT-B/16")},
))
