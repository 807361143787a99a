"""CLIP-SVD: tune only the singular values of CLIP's weight matrices.

Paper: T. Koleilat, H. Rivaz, Y. Xiao, "Singular Value Few-shot Adaptation of Vision-Language
Models", 2025 (arXiv 2509.03740). Official code: github.com/HealthX-Lab/CLIP-SVD, commit
022b1eda02df7a5a1311d0868d49874d69b0010e (read: main.py, train.py, svf_utils/, configs/few_shot,
configs/base2new, scripts/).

Official settings, kept: every q, k, v and output projection of the attention and both MLP
linear layers of every block of both encoders written W = U diag(s) V^T at full rank, only s
trained (92,160 values on ViT-B/16); AdamW lr 5e-4, weight decay 0.01, betas (0.9, 0.999), batch
32; cosine per iteration down to 1e-6 over 200 x shots iterations (the natural-image few-shot
runs: `n_iters` 200 x shots; the configs' `train_epochs` only drive other runs); fp16 autocast on
fp32 weights without a loss scaler; logits 100 x cosine; each dataset's template from its config
(this toolkit's templates, Food101's written as theirs); the last iterate evaluated. Base-to-new:
lr 4e-4 and `train_epochs` passes with the cosine's period set to that epoch count but stepped per
iteration (as the official loop does): TRAINER.CLIP_SVD.EPOCHS and COSINE_T_MAX (docs).

Differences: the SVD is computed once in float64 on the CPU (the official code runs fp32 `torch.svd`
on the GPU), so U diag(s) V^T reproduces W to fp32 rounding on every device; the adapted weight is
formed once per step instead of the official factored product (same function, other rounding);
test images are encoded under the same autocast as training (the official evaluation runs the
image encoder in fp32). No random draw enters the parametrisation. Not matched: the few-shot
subset, data order and augmentation draws (this engine's).

Published ViT-B/16 averages over the 11 datasets (% top-1, the official README):
"""
from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY

from trainers.clip_lora import vit_option
from trainers.common.encoder_surgery import add_singular_values, check_projections
from trainers.common.encoder_trainer import EncoderTuningTrainer, check_encoders
from trainers.common.experiment import Method, register_method

PUBLISHED = {  # read by the tables
    "source": "CLIP-SVD's README, 11-dataset averages",
    "ViT-B/16": {"average": {1: 73.20, 2: 76.06, 4: 78.18, 8: 80.55, 16: 82.97}},
}
__doc__ += "    " + repr(PUBLISHED) + "\n"
TEMPLATES = {"Food101": "a photo of a {}, a type of food."}  # where their config differs from ours


@TRAINER_REGISTRY.register()
class CLIPSVD(EncoderTuningTrainer):
    CFG_NODE = "CLIP_SVD"
    LABEL = "CLIP-SVD"
    LOSS_SCALER = False  # the official loop calls loss.backward() on the unscaled fp16 loss

    def check_budget(self, cfg):
        node = cfg.TRAINER.CLIP_SVD
        if node.EPOCHS < 0 or node.COSINE_T_MAX < 0:
            raise ConfigError(f"TRAINER.CLIP_SVD.EPOCHS = {node.EPOCHS}, COSINE_T_MAX = {node.COSINE_T_MAX}; "
                              "both must be >= 0 (0: the iteration budget)")
        if node.EPOCHS == 0:
            super().check_budget(cfg)

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.CLIP_SVD
        check_projections(node.PARAMS, "TRAINER.CLIP_SVD.PARAMS")
        check_encoders(node.ENCODERS, "TRAINER.CLIP_SVD.ENCODERS")

    def total_iters(self):
        if self.settings.EPOCHS > 0:
            return self.settings.EPOCHS * len(self.train_loader_x)
        return super().total_iters()

    def make_optimizer(self, params, iters, t_max=None):
        return super().make_optimizer(params, iters, self.settings.COSINE_T_MAX or None)

    def template(self):
        return self.settings.TEMPLATE or TEMPLATES.get(self.cfg.DATASET.NAME) or super().template()

    def signature(self):
        node = self.settings
        return dict(super().signature(), params=list(node.PARAMS), mlp=node.MLP, encoders=node.ENCODERS)

    def adapt(self, clip_model):
        node = self.settings
        print("Singular value decomposition of the adapted weights (float64, once) ...")
        return add_singular_values(clip_model, check_encoders(node.ENCODERS, ""), node.PARAMS, mlp=node.MLP)


register_method(Method(
    name="clip_svd", trainer="CLIPSVD", label="CLIP-SVD", config=lambda dataset, shots: "vit_b16",
    options={"BACKBONE": vit_option()},
))
