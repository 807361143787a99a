"""CLIP-LoRA: low-rank adapters on the attention of both CLIP encoders.

Paper: M. Zanella, I. Ben Ayed, "Low-Rank Few-Shot Adaptation of Vision-Language Models",
CVPR Workshops 2024 (arXiv 2405.18541). Official code: github.com/MaxZanella/CLIP-LoRA, commit
358f0d7361f59e66c0b2d0b672a3dafb143a759b (read: run_utils.py, lora.py, loralib/, main.py, datasets/).

Official settings, all kept: rank 2, alpha 1 with scaling alpha / sqrt(rank); dropout 0.25 on the
input of each LoRA branch; q, k and v of every block of both encoders; A Kaiming-uniform, B zero;
AdamW lr 2e-4, weight decay 0.01, betas (0.9, 0.999); cosine schedule per iteration down to 1e-6
over 500 x shots iterations of batch 32; fp16 autocast with a loss scaler, frozen weights in fp16,
adapters in fp32; logits 100 x cosine; the template "a photo of a {}." for every dataset (the
per-dataset templates are commented out in the official datasets/); the last iterate evaluated
(no validation, nothing selected on test, so the fair protocol is the official one).

Same order of random draws for the initialisation: with TRAINER.CLIP_LORA.OFFICIAL_INIT (default)
each A gets the numbers the official script draws for the same seed (seeding, then building CLIP,
then one draw per evaluation loader, then the Linear layers its attention wrapper creates before
each A); the run's own random stream is left untouched. Not matched: the few-shot subset, the data
order, the augmentation and dropout draws (this engine's sampler and transforms); the engine's
training loader drops the last partial batch where the official one keeps it; on a CPU the run is
fp32.

Published ViT-B/16 averages over the 11 datasets (% top-1, as quoted in CLIP-SVD's README):
"""
from dassl.config.merge import ConfigError
from dassl.engine import TRAINER_REGISTRY

from trainers.common.encoder_surgery import add_lora, check_projections, text_tower, vision_tower
from trainers.common.encoder_trainer import EncoderTuningTrainer, check_encoders
from trainers.common.experiment import Method, Option, backbone_option, backbone_stem, register_method

PUBLISHED = {  # read by the tables
    "source": "CLIP-SVD's README (its comparison table), 11-dataset averages",
    "ViT-B/16": {"average": {1: 72.20, 2: 75.41, 4: 77.32, 8: 80.10, 16: 82.89}},
}
__doc__ += "    " + repr(PUBLISHED) + "\n"


def official_draws(seed, architecture):
    """A callback for `add_lora` that makes, under a forked generator seeded with `seed`, the
    random draws the official script makes before and between its adapters. Returns None
    (the run's own stream is used) when the architecture is unknown."""
    import torch
    import torch.nn as nn
    from clip.model import CLIP

    from trainers.common.clip_loader import CLIP_ARCHITECTURES, TOY_ARCHITECTURES
    arch = {**CLIP_ARCHITECTURES, **TOY_ARCHITECTURES}.get(architecture)
    if arch is None or seed < 0:
        return None
    torch.random.default_generator.manual_seed(seed)  # the CPU generator only: CUDA's stream stays the run's
    CLIP(**arch)  # clip.load builds (and randomly initialises) the model after seeding
    for _ in range(2):  # the val and test loaders' iterators each draw a base seed
        torch.empty((), dtype=torch.int64).random_()

    def draws(event, width):
        # The wrapper builds q, k, v and out Linear layers, then each LoRA layer one more.
        for _ in range(4 if event == "attention" else 1):
            nn.Linear(width, width)
    return draws


@TRAINER_REGISTRY.register()
class CLIPLoRA(EncoderTuningTrainer):
    CFG_NODE = "CLIP_LORA"
    LABEL = "CLIP-LoRA"
    LOSS_SCALER = True
    STORE_FP16 = True

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        node = cfg.TRAINER.CLIP_LORA
        if not isinstance(node.RANK, int) or node.RANK < 1:
            raise ConfigError(f"TRAINER.CLIP_LORA.RANK = {node.RANK!r}; the LoRA rank must be a whole number >= 1 "
                              "(official: 2)")
        if not 0 <= node.DROPOUT < 1:
            raise ConfigError(f"TRAINER.CLIP_LORA.DROPOUT = {node.DROPOUT}; must be in [0, 1)")
        check_projections(node.PARAMS, "TRAINER.CLIP_LORA.PARAMS")
        check_encoders(node.ENCODERS, "TRAINER.CLIP_LORA.ENCODERS")

    def signature(self):
        node = self.settings
        return dict(super().signature(), rank=node.RANK, params=list(node.PARAMS), encoders=node.ENCODERS)

    def adapt(self, clip_model):
        import torch
        node = self.settings
        width = max(text_tower(clip_model).width, vision_tower(clip_model).width)
        if node.RANK > width:
            raise ConfigError(f"TRAINER.CLIP_LORA.RANK = {node.RANK} exceeds the attention width ({width}); "
                              "use a rank well below it (official: 2)")
        with torch.random.fork_rng(devices=[]):
            draws = official_draws(self.cfg.SEED, clip_model.architecture) if node.OFFICIAL_INIT else None
            if node.OFFICIAL_INIT and draws is None:
                print("LoRA init: architecture or seed unknown to the official sequence; drawing from the run's "
                      "own stream")
            trained = add_lora(clip_model, check_encoders(node.ENCODERS, ""), node.PARAMS, node.RANK, node.ALPHA,
                               node.DROPOUT, draws=draws)
        print(f"LoRA rank {node.RANK}, alpha {node.ALPHA}, dropout {node.DROPOUT} on {list(node.PARAMS)} of "
              f"the {node.ENCODERS} encoder(s)")
        return trained


def _rank(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"expected a rank >= 1, not {text!r}")
    return str(int(text))


def vit_option():
    """The backbone option of the encoder-tuning methods: a ViT, each `clip` one with its config."""
    return backbone_option(lambda backbone, stem: backbone_stem(backbone), default="ViT-B/16", vit_only=True)


register_method(Method(
    name="clip_lora", trainer="CLIPLoRA", label="CLIP-LoRA", config=lambda dataset, shots: "vit_b16",
    options={"RANK": Option("TRAINER.CLIP_LORA.RANK", "2", "LoRA rank", normalize=_rank),
             "BACKBONE": vit_option()},
    variant=lambda v: f"r{v['RANK']}",
))
