"""The one model interface every method talks to, whatever library the CLIP-like model comes from.

`load_backbone(cfg)` reads MODEL.BACKBONE.NAME / PATH / PRETRAINED and returns a `Backbone`.
Names: the `clip` package's models (RN50, RN101, ViT-B/32, ViT-B/16, ...), `tiny-pretrained`
(trainers.common.tiny_pretrained), and `open_clip:ARCH/TAG` (open_clip's architecture ARCH with
its pretrained weights TAG, e.g. open_clip:ViT-B-16/laion2b_s34b_b88k; `open_clip:ARCH` alone with
MODEL.BACKBONE.PATH or PRETRAINED False). This module (with its loaders clip_loader.py and
open_clip_loader.py) is the only code that knows which library a model comes from.

    Backbone(nn.Module)
      name            MODEL.BACKBONE.NAME as given
      architecture    the architecture really loaded ("RN50", "tiny-rn", "open_clip:ViT-B-16", ...)
      library         "clip" | "open_clip"
      weights         what the weights are (result.json's "weights")
      dtype           the dtype the towers compute in (inputs are cast to it)
      embed_dim       D, the joint embedding width; is_vit: the image tower is a transformer
      logit_scale     nn.Parameter (log of the scale); logit_bias: nn.Parameter or None (SigLIP).
                      The bias is one scalar added to every logit: softmax, cross-entropy and
                      argmax ignore it, so the methods' cosine logits leave it out.
      preprocess      Preprocess(resolution, mean, std, interpolation) the model was trained with;
                      resize_mode: open_clip's "shortest" (resize + centre crop) or "squash"
      context_length  L, tokens per text
      encode_image(images [B, 3, H, W]) -> [B, D]        encode_text(tokens [N, L]) -> [N, D]
      tokenize(texts) -> LongTensor [N, L]   (PromptTooLong, a RuntimeError, when a text does not fit)
      pool_index(tokens) -> LongTensor [N]    the position whose feature is pooled: EOT (argmax of
                      the ids) for CLIP-style towers, L - 1 for SigLIP's last-token pooling
      token_embedding nn.Embedding: token_embedding(tokens) -> [N, L, W] (in its own dtype)
      encode_text_embeddings(embeddings [N, L', W], pool_index [N]) -> [N, D]: add the positional
                      embedding, run the blocks (with the tower's mask), final norm, take the
                      feature at pool_index, project. With embeddings = token_embedding(tokens)
                      and pool_index = pool_index(tokens) it equals encode_text(tokens). L' <= L.
      text_tower, vision_tower: Tower
        blocks        the residual blocks in order (an indexable module list: nn.ModuleList or,
                      for timm image towers, nn.Sequential); None for ResNet image towers
        width         the blocks' width (None for ResNets)
        batch_first   blocks take [N, L, W] (True) or [L, N, W] (False)
        causal        the blocks attend causally (text of CLIP-style towers) or not
        ln_pre        the norm applied before the first block (None if there is none)
      Text-tower extras (text_tower only):
        positional_embedding [L, W]; ln_final; attn_mask(length, dtype, device) -> the additive
        [length, length] mask the blocks need (None: full attention);
        run_block(block, x, attn_mask) -> one block on x (tower layout) with that mask;
        plain_blocks: every block is (ln_1, nn.MultiheadAttention attn, ln_2, mlp) with no layer
        scale, so code may run its parts itself (CoOp's shared prefix does).
    Further helpers: text_start (special tokens before a text's first token: 1 for CLIP's SOS),
    token_counts(texts) (tokens each text takes, specials excluded), text_projection ([W, D]),
    project_text([.., W]) -> [.., D], set_text_projection(matrix), encode_text_unprojected(tokens)
    -> [N, W] (pooled after the final norm), visual (the image tower module, for fingerprints),
    cast(precision) ("fp16" casts as the library does for half precision; else float()).

Deep prompts reach the layers with forward hooks on `text_tower.blocks[i]` / `vision_tower.blocks[i]`
(and `ln_pre`); encoder surgery (LoRA, ...) wraps the modules inside those blocks. Both check
`batch_first` for the token axis.
"""
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn as nn

from dassl.config.merge import ConfigError

OPEN_CLIP_PREFIX = "open_clip:"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class PromptTooLong(RuntimeError):
    """A text does not fit the tokenizer's context length."""


class Preprocess(NamedTuple):
    resolution: int
    mean: tuple
    std: tuple
    interpolation: str


@dataclass(eq=False)
class Tower:
    """Layers of one tower, as hooks and surgery reach them (module docstring)."""
    blocks: Optional[nn.Module]
    width: Optional[int]
    batch_first: bool
    causal: bool
    ln_pre: Optional[nn.Module] = None
    # text tower only
    positional_embedding: Optional[torch.Tensor] = None
    ln_final: Optional[nn.Module] = None
    mask: Optional[torch.Tensor] = None  # the full additive causal mask, None: full attention
    block_runner: Optional[Callable] = None
    plain_blocks: bool = False

    def attn_mask(self, length, dtype, device):
        if self.mask is None:
            return None
        return self.mask[:length, :length].to(dtype=dtype, device=device)

    def run_block(self, block, x, attn_mask):
        return self.block_runner(block, x, attn_mask)


def is_open_clip_name(name):
    return str(name).startswith(OPEN_CLIP_PREFIX)


def _plain_blocks(blocks):
    """Every block is CLIP's (ln_1, MultiheadAttention, ln_2, mlp), without layer scale."""
    def plain(block):
        attn = getattr(block, "attn", None)
        return (isinstance(attn, nn.MultiheadAttention) and attn.in_proj_weight is not None
                and hasattr(block, "ln_1") and hasattr(block, "ln_2") and hasattr(block, "mlp")
                and all(isinstance(getattr(block, ls, nn.Identity()), nn.Identity) for ls in ("ls_1", "ls_2"))
                and not hasattr(block, "ln_1_kv"))
    return all(plain(b) for b in blocks)


class Backbone(nn.Module):
    """A CLIP-like model behind the interface of the module docstring, built by the loaders
    (`_clip_backbone` here, `open_clip_loader.backbone_from_open_clip_model`), which say where
    each piece of the library's model is."""

    def __init__(self, model, *, name, architecture, library, weights, text_tower, vision_tower,
                 token_embedding, text_projection, pool, eos_id, tokenizer, preprocess, resize_mode="shortest",
                 logit_bias=None, dtype_of=None, cast_half=None):
        super().__init__()
        self.model = model
        self.name, self.architecture, self.library, self.weights = name, architecture, library, weights
        self.text_tower, self.vision_tower = text_tower, vision_tower
        self.token_embedding = token_embedding
        self._projection = text_projection  # nn.Parameter [W, D] or nn.Linear(W, D)
        self._pool, self._eos_id = pool, eos_id
        self._tokenizer = tokenizer  # a Tokenizer (below)
        self.preprocess = preprocess
        self.resize_mode = resize_mode
        self.logit_scale = model.logit_scale
        self.logit_bias = logit_bias
        self._dtype_of = dtype_of
        self._cast_half = cast_half
        self.context_length = int(text_tower.positional_embedding.shape[0])

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self):
        return self._dtype_of(self.model)

    @property
    def visual(self):
        return self.model.visual

    @property
    def is_vit(self):
        return self.vision_tower.blocks is not None

    @property
    def text_projection(self):
        """[W, D] (a Parameter for CLIP-style towers; the transposed weight of a Linear)."""
        if isinstance(self._projection, nn.Linear):
            return self._projection.weight.t()
        return self._projection

    @property
    def embed_dim(self):
        return int(self.text_projection.shape[1])

    # ------------------------------------------------------------------ precision
    def cast(self, precision):
        """"fp16": half precision the way the library does it; anything else: fp32."""
        if precision == "fp16":
            self._cast_half(self.model)
        else:
            self.float()
        return self

    # ------------------------------------------------------------------ images
    def encode_image(self, images):
        return self.model.encode_image(images)

    # ------------------------------------------------------------------ text
    def encode_text(self, tokens):
        return self.model.encode_text(tokens)

    def tokenize(self, texts):
        return self._tokenizer.tokenize(texts)

    @property
    def text_start(self):
        return self._tokenizer.text_start

    def token_counts(self, texts):
        return self._tokenizer.token_counts(texts)

    def pool_index(self, tokens):
        if self._pool == "argmax":
            return tokens.argmax(dim=-1)  # EOT has the largest id of CLIP's vocabulary
        if self._pool == "last":
            return torch.full((tokens.shape[0],), tokens.shape[1] - 1, dtype=torch.long, device=tokens.device)
        if self._pool == "first":
            return torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        return (tokens == self._eos_id).int().argmax(dim=-1)  # "eos"

    def project_text(self, x):
        if isinstance(self._projection, nn.Linear):
            return self._projection(x)
        return x @ self._projection

    def set_text_projection(self, matrix):
        """Replace the [W, D] projection (TaskRes' enhanced base); a Linear keeps its bias."""
        with torch.no_grad():
            if isinstance(self._projection, nn.Linear):
                self._projection.weight.copy_(matrix.t())
            else:
                self._projection.copy_(matrix)

    def _text_hidden(self, embeddings):
        """Token features after the blocks and the final norm, [N, L', W], in the model dtype."""
        tower, dtype = self.text_tower, self.dtype
        length = embeddings.shape[1]
        x = embeddings.type(dtype) + tower.positional_embedding[:length].type(dtype)
        if not tower.batch_first:
            x = x.permute(1, 0, 2)
        mask = tower.attn_mask(length, x.dtype, x.device)
        for block in tower.blocks:
            x = tower.run_block(block, x, mask)
        if not tower.batch_first:
            x = x.permute(1, 0, 2)
        return tower.ln_final(x).type(dtype)

    def encode_text_embeddings(self, embeddings, pool_index):
        x = self._text_hidden(embeddings)
        return self.project_text(x[torch.arange(x.shape[0], device=x.device), pool_index])

    def encode_text_unprojected(self, tokens):
        x = self._text_hidden(self.token_embedding(tokens))
        return x[torch.arange(x.shape[0], device=x.device), self.pool_index(tokens)]

    def extra_repr(self):
        return f"name={self.name!r}, library={self.library}, architecture={self.architecture!r}"


# ---------------------------------------------------------------------------- tokenizers
class Tokenizer:
    """Tokenizes texts; refuses (PromptTooLong) a text that would be cut."""

    def __init__(self, tokenize, count, context_length, text_start, n_special, what):
        self._tokenize, self._count = tokenize, count
        self.context_length, self._text_start, self._n_special = context_length, text_start, n_special
        self.what = what

    @property
    def text_start(self):
        return self._text_start() if callable(self._text_start) else self._text_start

    def token_counts(self, texts):
        return [self._count(t) for t in ([texts] if isinstance(texts, str) else texts)]

    def tokenize(self, texts):
        texts = [texts] if isinstance(texts, str) else list(texts)
        n_special = self._n_special() if callable(self._n_special) else self._n_special
        for text, count in zip(texts, self.token_counts(texts)):
            if count + n_special > self.context_length:
                raise PromptTooLong(f"Input {text[:60]!r} is too long for context length {self.context_length} "
                                    f"of {self.what} ({count} tokens + {n_special} special)")
        return self._tokenize(texts)


# ---------------------------------------------------------------------------- loading
def _clip_backbone(model, name, architecture, weights):
    """A `clip.model.CLIP` behind the interface."""
    import clip
    from clip.simple_tokenizer import SimpleTokenizer

    from .clip_loader import convert_weights

    def run_block(block, x, attn_mask):  # the block's own forward would apply its stored 77x77 mask
        y = block.ln_1(x)
        x = x + block.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
        return x + block.mlp(block.ln_2(x))

    blocks = model.transformer.resblocks
    text = Tower(blocks=blocks, width=model.transformer.width, batch_first=False, causal=True,
                 positional_embedding=model.positional_embedding, ln_final=model.ln_final,
                 mask=blocks[0].attn_mask, block_runner=run_block, plain_blocks=_plain_blocks(blocks))
    visual = model.visual
    if hasattr(visual, "transformer"):
        vision = Tower(blocks=visual.transformer.resblocks, width=visual.transformer.width, batch_first=False,
                       causal=False, ln_pre=visual.ln_pre)
    else:
        vision = Tower(blocks=None, width=None, batch_first=False, causal=False)
    bpe = SimpleTokenizer()
    context_length = model.context_length
    tokenizer = Tokenizer(lambda texts: clip.tokenize(texts, context_length=context_length),
                          lambda text: len(bpe.encode(text)), context_length, 1, 2, f"CLIP {architecture}")
    return Backbone(model, name=name, architecture=architecture, library="clip", weights=weights,
                    text_tower=text, vision_tower=vision, token_embedding=model.token_embedding,
                    text_projection=model.text_projection, pool="argmax", eos_id=None, tokenizer=tokenizer,
                    preprocess=Preprocess(visual.input_resolution, CLIP_MEAN, CLIP_STD, "bicubic"),
                    dtype_of=lambda m: m.dtype, cast_half=convert_weights)


def load_backbone(cfg):
    """The backbone MODEL.BACKBONE names, on CPU, eval mode (module docstring). `clip` models
    come in fp16 as `clip.model.build_model` returns them; open_clip models in fp32."""
    name = cfg.MODEL.BACKBONE.NAME
    if is_open_clip_name(name):
        from .open_clip_loader import load_open_clip
        return load_open_clip(cfg)
    from .clip_loader import load_clip_to_cpu, weights_description
    model = load_clip_to_cpu(cfg)
    return _clip_backbone(model, name, model.architecture, weights_description(cfg)).eval()


def backbone_from_clip_model(model, name="custom", architecture=None):
    """A `clip.model.CLIP` built elsewhere (tests, benchmarks) behind the interface."""
    return _clip_backbone(model, name, architecture or name, "given model").eval()


def model_preprocess(cfg):
    """Preprocess of the model cfg names, known without loading weights; None for `clip`
    package models, whose config files carry their preprocessing."""
    if not is_open_clip_name(cfg.MODEL.BACKBONE.NAME):
        return None
    from .open_clip_loader import open_clip_preprocess
    return open_clip_preprocess(cfg.MODEL.BACKBONE.NAME)


def apply_model_preprocess(cfg):
    """For open_clip backbones: INPUT.SIZE / PIXEL_MEAN / PIXEL_STD / INTERPOLATION become the
    model's own (before any transform is built), printing what is used and what changed."""
    found = model_preprocess(cfg)
    if found is None:
        return
    preprocess, resize_mode = found
    if resize_mode not in ("shortest", "squash"):
        raise ConfigError(f"{cfg.MODEL.BACKBONE.NAME} resizes its test images with open_clip's {resize_mode!r} mode, "
                          "which this toolkit's transforms do not offer (INPUT.RESIZE_MODE: shortest, squash)")
    wanted = {"INPUT.SIZE": (preprocess.resolution, preprocess.resolution),
              "INPUT.PIXEL_MEAN": tuple(preprocess.mean), "INPUT.PIXEL_STD": tuple(preprocess.std),
              "INPUT.INTERPOLATION": preprocess.interpolation, "INPUT.RESIZE_MODE": resize_mode}
    changed = []
    frozen = cfg.is_frozen()
    cfg.defrost()
    for key, value in wanted.items():
        leaf = key.split(".")[1]
        current = cfg.INPUT[leaf]
        same = current == value if isinstance(value, str) else (
            len(current) == len(value) and all(abs(float(a) - float(b)) < 1e-9 for a, b in zip(current, value)))
        if not same:
            changed.append(f"{key} {tuple(current) if not isinstance(current, str) else current} -> "
                           f"{value}")
        cfg.INPUT[leaf] = list(value) if isinstance(value, tuple) and leaf != "SIZE" else value
    if frozen:
        cfg.freeze()
    print(f"Preprocessing of {cfg.MODEL.BACKBONE.NAME}: {preprocess.resolution}x{preprocess.resolution}, "
          f"mean {tuple(round(m, 6) for m in preprocess.mean)}, std {tuple(round(s, 6) for s in preprocess.std)}, "
          f"{preprocess.interpolation} interpolation, test images resized with mode {resize_mode!r}")
    if changed:
        print("  the model's values replace the config's: " + "; ".join(changed))


# ViT backbones for the methods that work inside the image tower's blocks (MODEL.BACKBONE.NAME).
VIT_BACKBONES = ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px", "tiny-vit-pretrained")


def require_vit(cfg, method, why, backbone=None):
    """Refuse a ResNet image tower for `method`, which `why` (e.g. "puts prompts into the layers
    of the image encoder"): by name before anything loads (backbone None), by the loaded
    `backbone` after (a weights file or an open_clip name may hold a ResNet)."""
    name, path = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.get("PATH", "")
    if backbone is None:
        resnet = not path and (name.startswith("RN") or name == "tiny-pretrained")
        where = f"MODEL.BACKBONE.NAME = {name}"
    else:
        resnet = not backbone.is_vit
        where = (f"MODEL.BACKBONE.PATH {path} holds {backbone.architecture}" if path
                 else f"MODEL.BACKBONE.NAME = {name}")
    if resnet:
        raise ConfigError(f"{where} (a ResNet): {method} {why}, and a ResNet image encoder has none. Use a ViT "
                          f"backbone: MODEL.BACKBONE.NAME one of {', '.join(VIT_BACKBONES)} or an open_clip ViT "
                          f"(INPUT.SIZE to match: 224, 336 for ViT-L/14@336px, 32 for tiny-vit-pretrained)")


def check_input(cfg, backbone):
    """INPUT.* must be what the backbone was built for: the resolution always (otherwise the
    first forward pass dies with a shape error), mean/std/interpolation for open_clip models."""
    size = backbone.preprocess.resolution
    if tuple(cfg.INPUT.SIZE) != (size, size):
        raise ConfigError(f"INPUT.SIZE = {tuple(cfg.INPUT.SIZE)} but {cfg.MODEL.BACKBONE.NAME} "
                          f"takes {size}x{size} images; set INPUT.SIZE ({size}, {size})")
    if backbone.library == "clip":
        return
    for key, value in (("PIXEL_MEAN", backbone.preprocess.mean), ("PIXEL_STD", backbone.preprocess.std)):
        if any(abs(float(a) - float(b)) > 1e-6 for a, b in zip(cfg.INPUT[key], value)):
            raise ConfigError(f"INPUT.{key} = {tuple(cfg.INPUT[key])} but {cfg.MODEL.BACKBONE.NAME} was trained "
                              f"with {tuple(value)}; set INPUT.{key} {list(value)}")
    if cfg.INPUT.get("RESIZE_MODE", "shortest") != backbone.resize_mode:
        raise ConfigError(f"INPUT.RESIZE_MODE = {cfg.INPUT.get('RESIZE_MODE', 'shortest')} but "
                          f"{cfg.MODEL.BACKBONE.NAME} was evaluated with {backbone.resize_mode}; set INPUT.RESIZE_MODE "
                          f"{backbone.resize_mode}")
    if cfg.INPUT.INTERPOLATION != backbone.preprocess.interpolation:
        raise ConfigError(f"INPUT.INTERPOLATION = {cfg.INPUT.INTERPOLATION} but {cfg.MODEL.BACKBONE.NAME} was "
                          f"trained with {backbone.preprocess.interpolation}; set INPUT.INTERPOLATION "
                          f"{backbone.preprocess.interpolation}")
