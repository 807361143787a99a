"""Base trainer for methods that learn a small module on top of a frozen CLIP.

Images reach CLIP only through `image_features`, and a method only says how image features
become logits (`logits`), so cached features can later replace the encoder pass without
touching any method. CLIP is kept outside the registered modules: it is never saved,
loaded, stepped or switched to train mode (RN50's BatchNorm keeps its running stats).
"""
import torch
import torch.nn.functional as F

from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy

from trainers.common.backbone import apply_model_preprocess, check_input, load_backbone
from trainers.common.feature_cache import random_views, resolve_pipeline
from trainers.common.feature_pipeline import TrainerFeatureCache


class FrozenCLIPTrainer(TrainerX):
    """Subclasses set `self.clip_model` (via `freeze_on_device`) and define `logits`.

    `self.pipeline` ({"name", "views"}, JSON-able) says how images reach the encoder
    (trainers/common/feature_cache.py). Unless it is "reference", the test (and, when used,
    val) loaders are swapped for loaders over exactly cached features; with "fast" the
    training loader too, when training starts. `image_features` passes [B, D] features
    through, so the methods do not notice.
    """

    def __init__(self, cfg):
        self.image_encoder_forwards = 0  # images through CLIP's image encoder (benchmarks read it)
        self.feature_cache = None
        self.pipeline = resolve_pipeline(cfg)  # before data and CLIP load: a bad value stops at once
        apply_model_preprocess(cfg)  # open_clip models: their own INPUT.* before any transform is built
        super().__init__(cfg)
        if self.pipeline["name"] != "reference":
            self.feature_cache = TrainerFeatureCache(self, self.pipeline)
            # val is read only for best_val model selection or TEST.SPLIT val; otherwise its
            # (rare) use runs through the encoder as before.
            if self.val_loader is not None and (cfg.TEST.FINAL_MODEL == "best_val" or cfg.TEST.SPLIT == "val"):
                self.val_loader = self.feature_cache.eval_loader(self.val_loader, "val")
        else:
            print("Pipeline reference: every image goes through the image encoder whenever a loader "
                  "yields it; nothing cached")

    def prepare_test_loader(self, loader):
        """The final evaluation reads cached test features (built then, once the test split
        is open); with TEST.NO_TEST a (rare) test still runs through the encoder."""
        if self.feature_cache is None or self.cfg.TEST.NO_TEST:
            return loader
        return self.feature_cache.eval_loader(loader, "test")

    def before_train(self):
        if self.pipeline["name"] == "fast":
            self.train_loader_x = self.feature_cache.train_loader(self.train_loader_x)
        super().before_train()

    def before_epoch(self):
        if self.pipeline["name"] == "fast":
            dataset, views = self.train_loader_x.dataset, self.pipeline["views"]
            if self.pipeline["view_order"] == "random":
                dataset.view = random_views(len(dataset), views, self.cfg.SEED, self.epoch)
            else:
                dataset.view = self.epoch % views
        super().before_epoch()

    def after_train(self):
        super().after_train()
        print(f"Image encoder passes: {self.image_encoder_forwards:,}")

    def load_clip(self):
        """The backbone (trainers.common.backbone.Backbone) MODEL.BACKBONE names, on CPU."""
        backbone = load_recorded_backbone(self.cfg, self.run_record)
        self.backbone_loaded = backbone.architecture
        return backbone

    def freeze_on_device(self, clip_model, precision):
        """Frozen backbone in eval mode on the device; half precision only for "fp16"."""
        clip_model.cast(precision)
        clip_model.requires_grad_(False)
        return clip_model.eval().to(self.device)

    @torch.no_grad()
    def image_features(self, images):
        """The one place images meet the CLIP image encoder ([B, D] cached features pass)."""
        if self.feature_cache is not None and images.dim() == 2:
            return images
        self.image_encoder_forwards += len(images)
        return self.clip_model.encode_image(images.type(self.clip_model.dtype))

    def logits(self, image_features):
        raise NotImplementedError

    def model_inference(self, input):
        return self.logits(self.image_features(input))

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        output = self.model_inference(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:  # the CLIP methods step once per epoch
            self.update_lr()
        return summary


def load_recorded_backbone(cfg, run_record):
    """The backbone MODEL.BACKBONE names, on CPU, checked against the input settings; what was
    loaded (architecture, weights, an open_clip model's preprocessing) goes into `run_record`."""
    print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
    backbone = load_backbone(cfg)
    run_record["backbone_loaded"] = backbone.architecture
    run_record["weights"] = backbone.weights
    if backbone.library != "clip":
        run_record["preprocess"] = dict(backbone.preprocess._asdict(), resize_mode=backbone.resize_mode)
    check_input(cfg, backbone)
    return backbone
