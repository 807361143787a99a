"""Deep prompts: learned tokens put into the layers of CLIP's text and image transformers.

Methods that prompt the encoders' inner layers (MaPLe, PromptSRC, and later ones) reach the
layers only through two towers (the model interface's names):

    Tower(blocks, width, batch_first, causal, ln_pre)   # blocks: the residual blocks in order

and change what enters them with forward pre-hooks, so the CLIP model code is run as it is
(nothing copied, nothing patched) and the unprompted model stays available: the hooks act only
inside `prompted(...)`.

- `append_tokens(tower, tokens)`: the tokens are appended after the last position of the
  sequence that enters `ln_pre` (the image tower's input: class token + patches, positional
  embedding added), so they go through `ln_pre` and every block with the image tokens.
- `replace_tokens(tower, {k: tokens}, start)`: before block k, the positions start..start+n
  are replaced by the tokens (start -n: the last n positions, where `append_tokens` put
  them). Block 0 is never given tokens here: its input already holds the first-layer prompts.

The text tower is run by `TextEncoder` (trainers/common/text_encoder.py), which runs its
blocks in a loop (it cuts the causal sequence after the last EOT); `text_layer_hook` gives it
the same replacement as a per-layer callback. The ResNet image encoders have no blocks:
`require_vit` (trainers/common/backbone.py) refuses them with one message.
"""
import contextlib
from typing import Dict

import torch
import torch.nn as nn

from dassl.config.merge import ConfigError
from dassl.engine import TrainerX

from .backbone import apply_model_preprocess, require_vit
from .clip_trainer import FrozenCLIPTrainer
from .precision import PRECISIONS, effective_precision

VIT_ONLY_BECAUSE = "puts prompts into the layers of the image encoder"


def towers(backbone):
    """(text_tower, vision_tower) of a `trainers.common.backbone.Backbone`: the only way in."""
    return backbone.text_tower, backbone.vision_tower


def _expand(tokens, batch, dtype):
    return tokens.to(dtype).unsqueeze(0).expand(batch, -1, -1)


def put_tokens(x, tokens, start, batch_first):
    """x with positions start..start+n (start < 0: counted from the end) replaced by `tokens`
    (n, W), the same for every sequence of the batch."""
    if not batch_first:
        x = x.transpose(0, 1)
    n, length = tokens.shape[0], x.shape[1]
    start = start + length if start < 0 else start
    x = torch.cat([x[:, :start], _expand(tokens, x.shape[0], x.dtype), x[:, start + n:]], dim=1)
    return x if batch_first else x.transpose(0, 1)


@contextlib.contextmanager
def prompted(vision_tower, append=None, replace: Dict[int, torch.Tensor] = None, start=None):
    """Inside the block, the image tower runs with `append` (n, W) after its input tokens and
    `replace[k]` put at positions start.. before block k (default start: the last n)."""
    handles = []
    try:
        if append is not None:
            if vision_tower.ln_pre is None:
                raise ValueError("this tower has no ln_pre to append tokens before")
            handles.append(vision_tower.ln_pre.register_forward_pre_hook(
                lambda module, args: (torch.cat([args[0], _expand(append, args[0].shape[0], args[0].dtype)],
                                                dim=1), *args[1:])))
        for k, tokens in sorted((replace or {}).items()):
            if not 0 < k < len(vision_tower.blocks):
                continue  # prompts deeper than the tower are never used (as in the reference code)
            at = -tokens.shape[0] if start is None else start

            def hook(module, args, tokens=tokens, at=at):
                return (put_tokens(args[0], tokens, at, vision_tower.batch_first), *args[1:])
            handles.append(vision_tower.blocks[k].register_forward_pre_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def text_layer_hook(replace: Dict[int, torch.Tensor], start=1, batch_first=False):
    """`TextEncoder(..., before_block=...)` callback: before text block k, positions
    start..start+n get `replace[k]` (default start 1: right after SOS, where the context is)."""
    def before_block(k, x):
        tokens = replace.get(k)
        return x if tokens is None or k == 0 else put_tokens(x, tokens, start, batch_first)
    return before_block


# --- What MaPLe and PromptSRC share around the hooks -------------------------------------------

def context_init(backbone, n_ctx, ctx_init, dtype, key):
    """The first-layer text context as the reference prompt learners start it: the embeddings
    of the first `n_ctx` tokens of `ctx_init` when it is set and n_ctx <= 4 (the prompt text
    keeps all of `ctx_init`), else N(0, 0.02) vectors drawn here and "X X .." as the text.
    Returns (vectors (n_ctx, width) in `dtype`, prompt prefix text)."""
    if n_ctx < 1:
        raise ConfigError(f"{key}.N_CTX = {n_ctx}; needs at least 1 context token")
    if ctx_init and n_ctx <= 4:
        text = ctx_init.replace("_", " ")
        start = backbone.text_start
        with torch.no_grad():
            embedding = backbone.token_embedding(backbone.tokenize(text).to(backbone.token_embedding.weight.device))
        return embedding[0, start:start + n_ctx].type(dtype).cpu(), text
    vectors = torch.empty(n_ctx, backbone.text_tower.width, dtype=dtype)
    nn.init.normal_(vectors, std=0.02)
    return vectors, " ".join(["X"] * n_ctx)


class ClassPrompts(nn.Module):
    """"<prefix> <class name>." per class, tokenized, with the embeddings around the context:
    prompt = [SOS] [context: positions 1..n_ctx] [the rest of the tokens, from n_ctx + 1]."""

    def __init__(self, backbone, classnames, prefix_text, n_ctx, dtype):
        super().__init__()
        names = [name.replace("_", " ") for name in classnames]
        texts = [f"{prefix_text} {name}." for name in names]
        try:
            tokens = backbone.tokenize(texts)
        except RuntimeError as err:
            raise ConfigError(f"a class prompt does not fit the text encoder ({err}); shorten the class names or "
                              f"the context (N_CTX / CTX_INIT)") from err
        device = backbone.token_embedding.weight.device
        start = backbone.text_start
        with torch.no_grad():
            embedding = backbone.token_embedding(tokens.to(device)).type(dtype)
        self.register_buffer("token_prefix", embedding[:, :start], persistent=False)
        self.register_buffer("token_suffix", embedding[:, start + n_ctx:], persistent=False)
        self.register_buffer("tokens", tokens.to(device), persistent=False)
        self.n_cls, self.start = len(names), start

    def forward(self, ctx):
        ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1).to(self.token_prefix.dtype)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


class PromptedModule(nn.Module):
    """The registered (saved) module of a deep-prompt method: its prompt learner only, CLIP
    stays outside. Reference checkpoints hold the whole model (image and text encoders, the
    fixed token embeddings): keys this module does not have are dropped on load, so they load
    too (a missing key is still an error)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        expected = {prefix + key for key in self.state_dict()}
        for key in [k for k in state_dict if k.startswith(prefix) and k not in expected]:
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DeepPromptTrainer(FrozenCLIPTrainer):
    """Shared plumbing: the reference pipeline (prompts change the image encoder, so its
    features are never cached), a ViT check before anything loads, precision per device,
    and amp for the training forward only."""

    method = ""  # shown in messages
    prec_key = ""  # e.g. "TRAINER.MAPLE"
    NEEDS_VIT = True  # a ResNet image tower is refused (require_vit)

    def __init__(self, cfg):
        self.image_encoder_forwards = 0
        self.feature_cache = None
        self.pipeline = {"name": "reference", "views": None}
        if cfg.TRAIN.FEATURE_CACHE.PIPELINE == "fast":  # the default (exact) one gives the same numbers
            print(f"Pipeline reference: {self.method} prompts the image encoder, so its features change at every "
                  f"step and are never cached (TRAIN.FEATURE_CACHE.PIPELINE fast does not apply)")
        apply_model_preprocess(cfg)  # open_clip models: their own INPUT.* before any transform is built
        TrainerX.__init__(self, cfg)

    def node(self, cfg=None):
        cfg = cfg or self.cfg
        return cfg.TRAINER.get(self.prec_key.split(".")[-1])

    def check_cfg(self, cfg):
        if self.node(cfg).PREC not in PRECISIONS:
            raise ConfigError(f"{self.prec_key}.PREC = {self.node(cfg).PREC!r}; use one of {PRECISIONS}")
        require_vit(cfg, self.method, VIT_ONLY_BECAUSE)

    def load_prompted_clip(self):
        """CLIP frozen on the device in the run's precision, and its two towers."""
        self.precision = effective_precision(self.node().PREC, self.device, key=f"{self.prec_key}.PREC")
        self.clip_model = self.freeze_on_device(self.load_clip(), self.precision)
        self.text_tower, self.vision_tower = towers(self.clip_model)
        require_vit(self.cfg, self.method, VIT_ONLY_BECAUSE, self.clip_model)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "amp" else None

    def autocast(self):
        if self.scaler is None or not torch.is_grad_enabled():
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=torch.float16)

    def count_image_forwards(self, images):
        self.image_encoder_forwards += len(images)
        return images.type(self.clip_model.dtype)


# --- The official order of random draws of prompts built into CLIP's modules ------------------

@contextlib.contextmanager
def prompt_draws_during_build(vision_shallow, vision_depth, text_depth, n_vision, n_text):
    """While CLIP is built inside the block, draw N(0, 0.02) prompts at the points where a
    reference implementation that builds its prompts into CLIP's modules (independent
    vision-language prompting, PromptSRC) draws them: the first image prompts right after the
    image encoder's patch convolution, each deeper prompt at the end of its block (blocks 1..depth-1
    of the image encoder, then of the text encoder). CLIP's own construction is untouched; the
    prompts are recorded in the yielded dict: "vision_shallow", "vision" {block: tensor},
    "text" {block: tensor}. If no CLIP VisionTransformer is built inside the block, they are
    drawn at its end, in the same order."""
    from clip.model import ResidualAttentionBlock, VisionTransformer

    drawn = {"vision_shallow": None, "vision": {}, "text": {}, "seen": False}
    state = {"tower": "vision", "block": 0}

    def draw(n, width):
        tensor = torch.empty(n, width)
        nn.init.normal_(tensor, std=0.02)
        return tensor

    def hook(module, name, submodule):
        if isinstance(module, VisionTransformer):
            drawn["seen"] = True
            if name == "conv1" and vision_shallow:
                drawn["vision_shallow"] = draw(n_vision, submodule.out_channels)
            elif name == "transformer":
                state.update(tower="text", block=0)
        elif isinstance(module, ResidualAttentionBlock) and name == "ln_2":
            index, tower = state["block"], state["tower"]
            state["block"] += 1
            depth, n = (vision_depth, n_vision) if tower == "vision" else (text_depth, n_text)
            if 0 < index < depth:
                drawn[tower][index] = draw(n, submodule.normalized_shape[0])
        return None

    handle = nn.modules.module.register_module_module_registration_hook(hook)
    try:
        yield drawn
    finally:
        handle.remove()


def draw_missing_prompts(drawn, text_tower, vision_tower, vision_shallow, vision_depth, text_depth, n_vision, n_text):
    """The fallback of `prompt_draws_during_build` (the model was not built as a CLIP there)."""
    if drawn["seen"]:
        return drawn
    def draw(n, width):
        tensor = torch.empty(n, width)
        nn.init.normal_(tensor, std=0.02)
        return tensor
    if vision_shallow:
        drawn["vision_shallow"] = draw(n_vision, vision_tower.width)
    drawn["vision"] = {k: draw(n_vision, vision_tower.width) for k in range(1, min(vision_depth, len(vision_tower.blocks)))}
    drawn["text"] = {k: draw(n_text, text_tower.width) for k in range(1, min(text_depth, len(text_tower.blocks)))}
    return drawn


def replay_clip_builds(backbone, times):
    """Build `times` randomly initialised CLIPs of the backbone's architecture and drop them:
    the random draws a reference implementation spends on loading extra frozen copies of CLIP,
    so that the draws after them (data order, augmentation) are the reference's. Only for the
    `clip` package's models (the references use them); other libraries skip it."""
    if backbone.library != "clip" or not backbone.is_vit:
        return
    from clip.model import CLIP
    model = backbone.model
    visual, width = model.visual, backbone.text_tower.width
    args = dict(embed_dim=backbone.embed_dim, image_resolution=visual.input_resolution,
                vision_layers=len(backbone.vision_tower.blocks), vision_width=backbone.vision_tower.width,
                vision_patch_size=visual.conv1.kernel_size[0], context_length=backbone.context_length,
                vocab_size=backbone.token_embedding.weight.shape[0], transformer_width=width,
                transformer_heads=width // 64, transformer_layers=len(backbone.text_tower.blocks))
    for _ in range(times):
        CLIP(**args)
