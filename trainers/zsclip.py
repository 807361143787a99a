"""Zero-shot CLIP baselines: class features from prompt templates, nothing trained."""
from dassl.engine import TRAINER_REGISTRY

from trainers.common.classifier import class_features, cosine_logits
from trainers.common.clip_trainer import FrozenCLIPTrainer
from trainers.common.experiment import Method, backbone_option, register_method, rn50_prefix_replaced
from trainers.common.precision import effective_precision
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
