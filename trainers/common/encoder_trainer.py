"""Base trainer for methods that tune CLIP's encoders themselves (CLIP-LoRA, CLIP-SVD, 2SFS).

Unlike `FrozenCLIPTrainer`, the encoders change at every step, so no feature cache applies:
every training and test image goes through the (adapted) image encoder, the test pass in
batches of DATALOADER.TEST.BATCH_SIZE. What it shares:
- a budget in iterations (ITERS_PER_SHOT x shots, or ITERS), AdamW and a per-iteration cosine
  schedule down to 1e-6, as the official code of all three methods runs them; the engine's
  epochs are the loader's passes, the last one cut where the budget ends;
- precision: on a GPU `amp` autocasts to fp16 (with a loss scaler where the official code
  uses one), `bf16` to bfloat16, `fp32` not at all; the CPU runs fp32;
- a ViT check (the surgery needs transformer blocks in both towers);
- the trained parameters registered as one small module (`TrainedParameters`): checkpoints hold
  only them, `--eval-only --model-dir` loads them into a freshly adapted CLIP.
"""
import contextlib

import torch
import torch.nn.functional as F

from dassl.config.merge import ConfigError
from dassl.engine import TrainerX
from dassl.metrics import compute_accuracy

from trainers.common.backbone import apply_model_preprocess, require_vit
from trainers.common.clip_trainer import load_recorded_backbone
from trainers.common.encoder_surgery import TrainedParameters

PRECISIONS = ("amp", "bf16", "fp32")
ETA_MIN = 1e-6  # the official cosine schedules' floor
ENCODERS = {"both": ("text", "vision"), "text": ("text",), "vision": ("vision",)}


def check_encoders(value, key):
    if value not in ENCODERS:
        raise ConfigError(f"{key} = {value!r}; use one of {list(ENCODERS)}")
    return ENCODERS[value]


class _FirstBatches:
    """The first `n` batches of a loader (the epoch the budget ends in stops early)."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __len__(self):
        return self.n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.n:
                return
            yield batch


VIT_ONLY_BECAUSE = "adapts the transformer blocks of both CLIP encoders"


class EncoderTuningTrainer(TrainerX):
    """Subclasses set CFG_NODE (their TRAINER.<node>), LABEL, and define `adapt(clip_model)`
    (-> {name: parameter}), and may override `signature`, `train_logits`, `eval_classifier`."""

    CFG_NODE = ""
    LABEL = ""
    LOSS_SCALER = True  # the official code scales fp16 losses
    STORE_FP16 = False  # frozen weights kept in fp16 on a GPU under amp (the official code's choice)
    LOGIT_SCALE = 100.0  # fixed in CLIP-LoRA and CLIP-SVD; None: CLIP's own exp(logit_scale)
    NEEDS_VIT = True  # a ResNet image tower is refused (require_vit)

    def __init__(self, cfg):
        apply_model_preprocess(cfg)  # open_clip models: their own INPUT.* before any transform is built
        super().__init__(cfg)

    # ---- configuration ------------------------------------------------------------------------
    @property
    def settings(self):
        return self.cfg.TRAINER[self.CFG_NODE]

    def check_cfg(self, cfg):
        node = cfg.TRAINER[self.CFG_NODE]
        key = f"TRAINER.{self.CFG_NODE}"
        if node.PREC not in PRECISIONS:
            raise ConfigError(f"{key}.PREC = {node.PREC!r}; use one of {PRECISIONS}")
        require_vit(cfg, self.LABEL, VIT_ONLY_BECAUSE)
        self.check_budget(cfg)
        if cfg.OPTIM.LR <= 0:
            raise ConfigError(f"OPTIM.LR = {cfg.OPTIM.LR}; must be positive")

    def check_budget(self, cfg):
        node = cfg.TRAINER[self.CFG_NODE]
        key = f"TRAINER.{self.CFG_NODE}"
        if node.ITERS < 0 or node.ITERS_PER_SHOT < 0 or (node.ITERS == 0 and node.ITERS_PER_SHOT == 0):
            raise ConfigError(f"{key}.ITERS = {node.ITERS}, {key}.ITERS_PER_SHOT = {node.ITERS_PER_SHOT}: the budget "
                              f"must be a positive number of iterations (ITERS), or ITERS 0 and ITERS_PER_SHOT > 0")
        if node.ITERS == 0 and cfg.DATASET.NUM_SHOTS < 1:
            raise ConfigError(f"DATASET.NUM_SHOTS = {cfg.DATASET.NUM_SHOTS}: {self.LABEL} trains for "
                              f"{key}.ITERS_PER_SHOT x shots iterations; give a shot count, or set {key}.ITERS")

    def total_iters(self):
        node = self.settings
        return node.ITERS if node.ITERS > 0 else node.ITERS_PER_SHOT * self.cfg.DATASET.NUM_SHOTS

    def stage_budgets(self):
        """[(stage name, iterations)]; one stage unless a method splits its budget."""
        return [("train", self.total_iters())]

    def signature(self):
        """What a checkpoint must match to load into this run (besides parameter shapes)."""
        return {"method": self.LABEL, "backbone": self.backbone_loaded}

    # ---- model ----------------------------------------------------------------------------
    def build_model(self):
        cfg = self.cfg
        node = self.settings
        self.precision = node.PREC if self.device.type == "cuda" else "fp32"
        if self.precision != node.PREC:
            print(f"TRAINER.{self.CFG_NODE}.PREC = {node.PREC} needs a CUDA device; running in fp32 on {self.device.type}")
        clip_model = load_recorded_backbone(cfg, self.run_record)
        self.backbone_loaded = clip_model.architecture
        require_vit(cfg, self.LABEL, VIT_ONLY_BECAUSE, clip_model)
        clip_model.float().requires_grad_(False).eval()
        total = sum(p.numel() for p in clip_model.parameters())
        trained = self.adapt(clip_model)
        if self.precision == "amp" and self.STORE_FP16:
            # Frozen weights in fp16 like the released model; trained parameters stay fp32.
            keep = {id(p) for p in trained.values()}
            for p in clip_model.parameters():
                if id(p) not in keep:
                    p.data = p.data.half()
        self.clip_model = clip_model.to(self.device)
        self.adapter = TrainedParameters(trained, self.signature()).to(self.device)
        self.scaler = (torch.amp.GradScaler("cuda") if self.precision == "amp" and self.LOSS_SCALER else None)
        self.adapter.scaler = self.scaler
        n = sum(p.numel() for p in trained.values())
        print(f"{self.LABEL}: {n:,} trained parameters ({100 * n / total:.3f} % of CLIP's {total:,})")
        self.classnames = list(self.dm.dataset.classnames)
        self.register_models()
        self.plan_epochs()

    def adapt(self, clip_model):
        raise NotImplementedError

    def register_models(self):
        (stage, iters), = self.stage_budgets()
        optim, sched = self.make_optimizer(self.adapter.parameters(), iters)
        self.register_model("adapter", self.adapter, optim, sched)
        self.stage_models = {stage: "adapter"}

    def make_optimizer(self, params, iters, t_max=None):
        o = self.cfg.OPTIM
        optim = torch.optim.AdamW(params, lr=o.LR, weight_decay=o.WEIGHT_DECAY, betas=(o.ADAM_BETA1, o.ADAM_BETA2))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, t_max or iters, eta_min=ETA_MIN)
        return optim, sched

    def plan_epochs(self):
        """[(stage, batches)] per engine epoch: each stage starts a fresh pass over the
        loader and its last pass stops where its budget ends (as the official loops do)."""
        per_epoch = len(self.train_loader_x)
        self.epoch_plan = []
        for stage, iters in self.stage_budgets():
            full, rest = divmod(iters, per_epoch)
            self.epoch_plan += [(stage, per_epoch)] * full + ([(stage, rest)] if rest else [])
        self.max_epoch = len(self.epoch_plan)
        budget = ", ".join(f"{s} {i}" for s, i in self.stage_budgets())
        print(f"Budget: {budget} iterations of batch {self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE} = {self.max_epoch} "
              f"passes over the {per_epoch} batches of the training set (OPTIM.MAX_EPOCH is not used)")

    # ---- precision --------------------------------------------------------------------------
    def autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.float16 if self.precision == "amp" else torch.bfloat16
        return torch.autocast(device_type="cuda", dtype=dtype)

    def precision_description(self):
        return f"TRAINER.{self.CFG_NODE}.PREC={self.precision}"

    # ---- training ---------------------------------------------------------------------------
    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        self.clip_model.train(mode == "train")  # LoRA dropout; CLIP's own modules have none

    def before_train(self):
        self._full_train_loader = self.train_loader_x
        super().before_train()

    def before_epoch(self):
        self.stage, batches = self.epoch_plan[self.epoch]
        self.train_loader_x = _FirstBatches(self._full_train_loader, batches)
        super().before_epoch()

    def after_train(self):
        self.train_loader_x = self._full_train_loader
        super().after_train()

    def text_features(self, classnames=None):
        tokens = self.tokens(classnames or self.classnames)
        features = self.clip_model.encode_text(tokens)
        return features / features.norm(dim=-1, keepdim=True)

    def tokens(self, classnames):
        import clip
        template = self.template()
        tokenize = getattr(self.clip_model, "tokenize", clip.tokenize)  # the backbone interface's, if any
        return tokenize([template.format(name.replace("_", " ")) for name in classnames]).to(self.device)

    def template(self):
        from trainers.common.templates import dataset_template
        return self.settings.TEMPLATE or dataset_template(self.cfg.DATASET.NAME)

    def image_features(self, images):
        features = self.clip_model.encode_image(images)
        return features / features.norm(dim=-1, keepdim=True)

    def logit_scale(self):
        if self.LOGIT_SCALE is not None:
            return self.LOGIT_SCALE
        return self.clip_model.logit_scale.exp().float()

    def train_logits(self, images):
        return self.logit_scale() * self.image_features(images) @ self.text_features().t()

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)
        with self.autocast():
            logits = self.train_logits(images)
        loss = F.cross_entropy(logits.float(), labels)
        name = self.stage_models[self.stage]
        self.model_backward_and_update(loss, name)
        self._scheds[name].step()  # per iteration
        return {"loss": loss.item(), "acc": compute_accuracy(logits.float(), labels)[0].item()}

    # ---- evaluation -------------------------------------------------------------------------
    def eval_classifier(self):
        """[C, D] normalised class weights the test pass uses."""
        return self.text_features()

    @torch.no_grad()
    def test(self, split=None):
        self.set_model_mode("eval")
        with self.autocast():
            self._classifier = self.eval_classifier()
        try:
            return super().test(split)
        finally:
            self._classifier = None

    def model_inference(self, images):
        with self.autocast():
            features = self.image_features(images)
        return self.logit_scale() * features.float() @ self._classifier.float().t()

