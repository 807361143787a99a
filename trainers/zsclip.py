"""Zero-shot CLIP baselines: class features from prompt templates, nothing trained."""
from dassl.engine import TRAINER_REGISTRY

from trainers.common.classifier import class_features, cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import Method, backbone_option, register_method, rn50_prefix_replaced
from trainers.common.precision import effective_precision
from trainers.common.published import Published, register_published
from trainers.common.published import rows as published_rows
from trainers.common.templates import IMAGENET_TEMPLATES_SELECT, dataset_template


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(FrozenCLIPTrainer):
    """The dataset's own template, "_" read as a space."""

    trains = False  # train.py then accepts DATASET.NUM_SHOTS 0 and OPTIM.MAX_EPOCH 0

    def templates(self):
        return [dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self):
        # Like the reference, CLIP runs as released (fp16) where the device allows it.
        precision = effective_precision("fp16", self.device, key="zero-shot CLIP precision")
        self.clip_model = self.freeze_on_device(self.load_clip(), precision)
        templates = self.templates()
        print(f"Prompt templates: {templates}")
        self.text_features = class_features(self.clip_model, self.dm.dataset.classnames, templates)

    def logits(self, image_features):
        return cosine_logits(image_features, self.text_features, self.clip_model.logit_scale)

    def train(self):
        print(f"{self.cfg.TRAINER.NAME} has nothing to train: evaluating directly")
        self.final_test()


@TRAINER_REGISTRY.register()
class ZeroshotCLIP2(ZeroshotCLIP):
    """Ensemble of ImageNet's 7 selected templates (+ the dataset's own, except on ImageNet),
    each template's features normalised before averaging."""

    def templates(self):
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(dataset_template(self.cfg.DATASET.NAME))
        return templates


# One seedless test per dataset; TRAINER=ZeroshotCLIP2 picks the prompt ensemble (same configs).
register_method(Method(name="zeroshot", trainer="ZeroshotCLIP", label="Zero-shot CLIP",
                       config=lambda dataset, shots: "rn50", trains=False,
                       alternatives=("ZeroshotCLIP2",),
                       options={"BACKBONE": backbone_option(rn50_prefix_replaced)}))

# Zero-shot CLIP (ViT-B/16, the dataset's template) on the base and new halves, from CoCoOp's paper.
register_published("ZeroshotCLIP", Published(
    "CLIP", "Zhou et al., Conditional Prompt Learning (CoCoOp), CVPR 2022, Table 1",
    base2new=published_rows([
        (69.34, 74.22, 71.70), (72.43, 68.14, 70.22), (96.84, 94.00, 95.40), (91.17, 97.26, 94.12),
        (63.37, 74.89, 68.65), (72.08, 77.80, 74.83), (90.10, 91.22, 90.66), (27.19, 36.29, 31.09),
        (69.36, 75.35, 72.23), (53.24, 59.90, 56.37), (56.48, 64.05, 60.03), (70.53, 77.50, 73.85)])))
