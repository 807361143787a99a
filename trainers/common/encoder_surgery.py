"""Encoder surgery: adapt the weights of CLIP's transformer blocks in place, with few parameters.

Three parametrisations, each reaching the layers only through the towers' `blocks`:
- LoRA (`add_lora`): W x + scaling * B A dropout(x) on chosen attention projections (q, k, v, o);
- singular values (`add_singular_values`): W = U diag(s) V^T with U, V frozen and s trained, on
  chosen attention projections and the MLP's linear layers;
- LayerNorm selection (`block_layernorm_parameters`): the affine parameters of the blocks' norms.

Attention: the `clip` and `open_clip` packages run `nn.MultiheadAttention`, whose q, k and v
weights are one fused `in_proj_weight` (3E x E). Hugging Face `peft` wraps `nn.MultiheadAttention`
with one adapter on the fused matrix (a rank-r update of the whole 3E x E block, shared by q, k
and v) and by merging it into the weight at every call; CLIP-LoRA instead has one rank-r adapter
per projection, each with its own dropout on its input. That parametrisation is not expressible
through peft, so `AdaptedAttention` below replaces the module: it computes q, k, v from slices of
the frozen fused weight plus each projection's own delta, then calls PyTorch's fused
`F.scaled_dot_product_attention` (causal kernel for the text tower's triangular mask). With
every delta at its initial value it computes what the wrapped module computed, to float
rounding.

Towers: `text_tower(model)` / `vision_tower(model)` give an object with `.blocks`; a model
that has the backbone interface's `text_tower`/`vision_tower` attributes is used as is, a
`clip.model.CLIP` through the small adapter below (the one place that knows its attribute names).
"""
import math
from types import SimpleNamespace

import torch
import torch.nn as nn
import torch.nn.functional as F

PROJECTIONS = ("q", "k", "v", "o")


# ---- towers --------------------------------------------------------------------------------

def text_tower(model):
    if hasattr(model, "text_tower"):
        return model.text_tower
    return SimpleNamespace(blocks=model.transformer.resblocks, width=model.transformer.width,
                           batch_first=False, causal=True, ln_pre=None)


def vision_tower(model):
    if hasattr(model, "vision_tower"):
        return model.vision_tower
    transformer = getattr(model.visual, "transformer", None)
    if transformer is None:  # ModifiedResNet
        return SimpleNamespace(blocks=None, width=None, batch_first=False, causal=False, ln_pre=None)
    return SimpleNamespace(blocks=transformer.resblocks, width=transformer.width, batch_first=False,
                           causal=False, ln_pre=model.visual.ln_pre)


def embed_dim(model):
    return model.embed_dim if hasattr(model, "text_tower") else model.text_projection.shape[1]


def selected_blocks(model, encoders):
    """[(encoder, index, block)] of the towers named in `encoders` ("text", "vision")."""
    found = []
    for encoder in encoders:
        tower = text_tower(model) if encoder == "text" else vision_tower(model)
        if tower.blocks is None:
            continue
        found += [(encoder, i, block) for i, block in enumerate(tower.blocks)]
    return found


def attention_of(block):
    """(attribute name, module) of the block's attention."""
    for name, child in block.named_children():
        if isinstance(child, (nn.MultiheadAttention, AdaptedAttention)):
            return name, child
    raise TypeError(f"{type(block).__name__} has no nn.MultiheadAttention child")


# ---- parametrised projections --------------------------------------------------------------

class LoRADelta(nn.Module):
    """scaling * B A dropout(x): A (r, in) Kaiming-uniform, B (out, r) zero, so it starts at 0."""

    def __init__(self, in_features, out_features, rank, alpha, dropout, scaling_rule="sqrt"):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        # CLIP-LoRA divides by sqrt(rank) (rsLoRA); the LoRA paper by rank.
        self.scaling = alpha / math.sqrt(rank) if scaling_rule == "sqrt" else alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        return F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B) * self.scaling


class SingularValues(nn.Module):
    """W = U diag(s) V^T of a frozen weight, s trained. The factors are recomputed from the
    pretrained weight whenever the model is built (they are not saved)."""

    def __init__(self, weight):
        super().__init__()
        # float64 on the CPU: the same factors on every device, and U diag(s) V^T == W to fp32 rounding.
        u, s, vh = torch.linalg.svd(weight.detach().to("cpu", torch.float64), full_matrices=False)
        self.register_buffer("U", u.float().to(weight.device), persistent=False)
        self.register_buffer("Vh", vh.float().to(weight.device), persistent=False)
        self.s = nn.Parameter(s.float().to(weight.device))

    def weight(self):
        return (self.U * self.s) @ self.Vh


class SVDLinear(nn.Module):
    """An nn.Linear whose weight is `SingularValues` of the original (bias frozen as is)."""

    def __init__(self, linear):
        super().__init__()
        self.svd = SingularValues(linear.weight)
        self.bias = linear.bias  # the original (frozen) parameter
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self):
        """The current weight (open_clip reads an MLP's weight for the dtype it casts inputs to)."""
        return self.svd.weight()

    def forward(self, x):
        w = self.svd.weight()
        return F.linear(x, w.to(x.dtype) if not torch.is_autocast_enabled() else w, self.bias)


class AdaptedAttention(nn.Module):
    """nn.MultiheadAttention (self-attention, no dropout) with per-projection adaptations.

    `deltas[p]` (p in q, k, v, o) adds its output to that projection's; `singular[p]` replaces
    that projection's weight by its SVD parametrisation. The frozen weights stay the wrapped
    module's own parameters (no copy)."""

    def __init__(self, mha):
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.in_proj_weight is None:
            raise TypeError("AdaptedAttention needs an nn.MultiheadAttention with a fused in_proj_weight")
        self.mha = mha  # kept as a child: its parameters stay where state dicts expect them
        self.embed_dim, self.num_heads, self.batch_first = mha.embed_dim, mha.num_heads, mha.batch_first
        self.deltas = nn.ModuleDict()
        self.singular = nn.ModuleDict()
        self._causal_masks = {}

    def base_weight(self, p):
        e = self.embed_dim
        if p == "o":
            return self.mha.out_proj.weight, self.mha.out_proj.bias
        i = "qkv".index(p)
        bias = self.mha.in_proj_bias
        return self.mha.in_proj_weight[i * e:(i + 1) * e], None if bias is None else bias[i * e:(i + 1) * e]

    def project(self, p, x):
        weight, bias = self.base_weight(p)
        if p in self.singular:
            weight = self.singular[p].weight()
        if not torch.is_autocast_enabled():
            weight = weight.to(x.dtype)
            bias = None if bias is None else bias.to(x.dtype)
        out = F.linear(x, weight, bias)
        if p in self.deltas:
            out = out + self.deltas[p](x).to(out.dtype)
        return out

    def _is_causal(self, mask):
        """True if `mask` is the additive upper-triangular -inf mask (checked once per mask)."""
        key = (mask.data_ptr(), tuple(mask.shape), mask.dtype, mask.device)
        if key not in self._causal_masks:
            if len(self._causal_masks) > 64:  # masks made per call (sliced, cast) would pile up
                self._causal_masks.clear()
            n = mask.shape[-1]
            causal = torch.full((n, n), float("-inf"), device=mask.device).triu_(1)
            self._causal_masks[key] = mask.dim() == 2 and mask.shape[0] == n and bool(
                torch.equal(mask.float(), causal))
        return self._causal_masks[key]

    def forward(self, query, key=None, value=None, need_weights=False, attn_mask=None, key_padding_mask=None,
                **kwargs):
        if key_padding_mask is not None or (key is not None and key is not query):
            raise NotImplementedError("AdaptedAttention supports self-attention without a key padding mask")
        x = query.transpose(0, 1) if self.batch_first else query  # (L, N, E)
        length, n, e = x.shape
        heads = self.num_heads

        def split(t):  # (L, N, E) -> (N, heads, L, E / heads)
            return t.reshape(length, n, heads, e // heads).permute(1, 2, 0, 3)

        q, k, v = (split(self.project(p, x)) for p in "qkv")
        causal = attn_mask is not None and self._is_causal(attn_mask)
        mask = None if attn_mask is None or causal else attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        out = out.permute(2, 0, 1, 3).reshape(length, n, e)
        out = self.project("o", out)
        return (out.transpose(0, 1) if self.batch_first else out), None


def adapted_attention(block):
    """The block's AdaptedAttention, wrapping its nn.MultiheadAttention on first use."""
    name, attn = attention_of(block)
    if not isinstance(attn, AdaptedAttention):
        attn = AdaptedAttention(attn)
        setattr(block, name, attn)
    return attn


def check_projections(projections, key):
    from dassl.config.merge import ConfigError
    bad = [p for p in projections if p not in PROJECTIONS]
    if bad or not projections:
        raise ConfigError(f"{key} = {list(projections)}: name attention projections among {list(PROJECTIONS)}")


# ---- the three surgeries -------------------------------------------------------------------

def add_lora(model, encoders, projections, rank, alpha, dropout, layers=None, draws=None):
    """Add a LoRA delta to `projections` of the attention of every block (or those in
    `layers`) of `encoders`; returns {name: parameter} of the new (trainable) parameters, in
    creation order. `draws(event, width)` runs before each attention is wrapped ("attention")
    and before each delta is drawn ("projection"): the random draws another implementation
    makes in between, so A gets the same numbers as there."""
    trained = {}
    for encoder, i, block in selected_blocks(model, encoders):
        if layers is not None and i not in layers:
            continue
        e = attention_of(block)[1].embed_dim
        if draws is not None:
            draws("attention", e)
        attn = adapted_attention(block)
        device = attn.mha.out_proj.weight.device
        for p in projections:
            if draws is not None:
                draws("projection", e)
            delta = LoRADelta(e, e, rank, alpha, dropout).to(device)
            attn.deltas[p] = delta
            trained[f"{encoder}.{i}.{p}.lora_A"] = delta.lora_A
            trained[f"{encoder}.{i}.{p}.lora_B"] = delta.lora_B
    return trained


def add_singular_values(model, encoders, projections, mlp=True, layers=None):
    """Parametrise `projections` of every block's attention (and, with `mlp`, the block's other
    nn.Linear layers) by their singular values; returns {name: s parameter}."""
    trained = {}
    for encoder, i, block in selected_blocks(model, encoders):
        if layers is not None and i not in layers:
            continue
        attn = adapted_attention(block)
        for p in projections:
            attn.singular[p] = SingularValues(attn.base_weight(p)[0])
            trained[f"{encoder}.{i}.{p}.s"] = attn.singular[p].s
        if mlp:
            for path, linear in _linears_outside_attention(block):
                wrapped = SVDLinear(linear)
                parent_path, _, child = path.rpartition(".")
                setattr(block.get_submodule(parent_path) if parent_path else block, child, wrapped)
                trained[f"{encoder}.{i}.{path}.s"] = wrapped.svd.s
    return trained


def _linears_outside_attention(block):
    attn_name = attention_of(block)[0]
    return [(name, m) for name, m in block.named_modules()
            if isinstance(m, nn.Linear) and not name.startswith(attn_name + ".") and name != attn_name]


def block_layernorm_parameters(model, encoders):
    """{name: parameter} of the LayerNorms inside the blocks of `encoders` (not ln_pre, ln_post
    or ln_final)."""
    trained = {}
    for encoder, i, block in selected_blocks(model, encoders):
        for name, m in block.named_modules():
            if isinstance(m, nn.LayerNorm):
                for pname, param in m.named_parameters(recurse=False):
                    trained[f"{encoder}.{i}.{name}.{pname}"] = param
    return trained


class TrainedParameters(nn.Module):
    """The parameters a surgery trains, registered under flat names: saving this module saves
    only them (kilobytes), loading it writes into the adapted CLIP in place. `signature` (method,
    backbone, rank, ...) travels with the state dict; loading a checkpoint with another
    signature raises `CheckpointError` naming the difference."""

    def __init__(self, named, signature):
        super().__init__()
        self.names = list(named)
        for name, param in named.items():
            param.requires_grad_(True)
            self.register_parameter(name.replace(".", "__"), param)
        self.signature = dict(signature)
        self.scaler = None  # a GradScaler whose state travels with the checkpoint (resume)

    def get_extra_state(self):
        return {"signature": self.signature,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def set_extra_state(self, state):
        from dassl.utils.errors import CheckpointError
        state = state or {}
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        saved = state.get("signature", {})
        differ = {k: (saved.get(k), v) for k, v in self.signature.items() if saved.get(k) != v}
        if differ:
            shown = "; ".join(f"{k} {old!r} (this run: {new!r})" for k, (old, new) in differ.items())
            raise CheckpointError(f"the checkpoint was trained with other settings: {shown}. Evaluate it with "
                                  "those settings, or point --model-dir at a run made with these.")
