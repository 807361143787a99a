"""A backbone's text tower applied to token *embeddings* (so learned prompt vectors can be fed in).

Same computation as the backbone's `encode_text` after its embedding lookup, in the order the
reference prompt learners use: add the positional embedding, run the blocks, the final norm,
take the feature at the pooled position (`Backbone.pool_index`: EOT for CLIP-style towers, the
last position for SigLIP) and project. Everything is reached through
`trainers.common.backbone.Backbone` (`text_tower`, `project_text`), whatever the library.

Speed-up (causal towers only): the EOT feature depends only on positions up to EOT. By default
the blocks therefore run on sequences cut after the longest EOT in the batch instead of all 77
positions (typically 20-30 for CoOp prompts). The result is the same up to float rounding;
`truncate=False` runs the full length. A tower without a causal mask (SigLIP) always runs the
full length, since every position sees the padding after it.

Shared prefix (`encode_shared_prefix`, causal towers of plain blocks): when every prompt starts
with the same tokens (CoOp with one context shared by all classes, class name at the end: SOS +
context), those positions have the same activations in every prompt, because attention is
causal. They are run once; each prompt then runs only its own tokens up to EOT, attending to the
prefix's keys and values of every layer, in groups: prompts of equal length together, or all
prompts padded to the longest (fewer, larger kernels).

The blocks are run through `text_tower.run_block` with a sliced causal mask passed per call,
because the `clip` package's block forward applies its stored 77x77 mask. Nothing in the shared
model is modified, so `encode_text` and other trainers holding the same model keep working.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _spread(past, n):
    """Earlier positions' keys or values (P, B, D) for n = B * G sequences, prefix-major:
    sequence b * G + g follows prefix b (B = 1: one prefix shared by all, as a view)."""
    if past.shape[1] == 1:
        return past.expand(-1, n, -1)
    return past.repeat_interleave(n // past.shape[1], dim=1)


def _run_block_after(block, x, past=None):
    """One plain block (`text_tower.plain_blocks`) on the positions x (L, N, D) that follow `past` = (keys, values) of the
    earlier positions ((P, 1, D), shared by the N sequences, or (P, B, D), one prefix per
    N / B consecutive sequences; None: no earlier positions).

    Causal attention: position i sees every earlier position and itself. Returns the new x and
    this call's (keys, values), which later positions attend to.
    """
    attn = block.attn
    length, n, width = x.shape
    heads = attn.num_heads
    y = block.ln_1(x)
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    keys, values = k, v
    if past is not None:
        keys = torch.cat([_spread(past[0], n), k])
        values = torch.cat([_spread(past[1], n), v])
    n_past = keys.shape[0] - length

    def split_heads(t):  # (T, N, D) -> (N, heads, T, D / heads)
        return t.reshape(t.shape[0], n, heads, width // heads).permute(1, 2, 0, 3)

    visible = torch.ones(length, n_past + length, dtype=torch.bool, device=x.device).tril(n_past)
    out = F.scaled_dot_product_attention(split_heads(q), split_heads(keys), split_heads(values),
                                         attn_mask=visible)
    out = out.permute(2, 0, 1, 3).reshape(length, n, width)
    x = x + F.linear(out, attn.out_proj.weight, attn.out_proj.bias)
    return x + block.mlp(block.ln_2(x)), (k, v)


def _check_causal(tower):
    """Truncation is exact only for causal towers; refuse anything else up front."""
    if not tower.causal:
        raise ValueError(
            "the text tower attends without a causal mask, so truncating prompts after EOT would "
            "change the result; build the TextEncoder with truncate=False (config "
            "TRAINER.COOP.TRUNCATE_TEXT False)"
        )


class TextEncoder(nn.Module):
    """Encode prompt embeddings (N, L, width) with a Backbone's text tower -> (N, embed_dim).

    Holds a reference to (not a copy of) the backbone; computes in the backbone's dtype.
    `truncate`: run only up to the longest EOT position (exact, faster, less memory).
    `grad_checkpoint`: recompute each block in backward instead of storing its activations
    (for very many classes: memory per step drops to about one block's worth).
    """

    def __init__(self, backbone, truncate=True, grad_checkpoint=False):
        super().__init__()
        self.backbone = [backbone]  # a list: not a registered submodule (never saved with a learner)
        self.tower = backbone.text_tower
        self.dtype = backbone.dtype
        self.truncate = truncate
        self.grad_checkpoint = grad_checkpoint
        if truncate:
            _check_causal(self.tower)

    def forward(self, prompts, tokenized_prompts, before_block=None):
        """`before_block(k, x)`: what enters block k (x in the tower's layout); deep prompts use
        it (trainers/common/deep_prompts.py)."""
        backbone, tower = self.backbone[0], self.tower
        pool = backbone.pool_index(tokenized_prompts)
        length = int(pool.max()) + 1 if self.truncate else prompts.shape[1]

        x = prompts[:, :length] + tower.positional_embedding[:length].type(self.dtype)
        if not tower.batch_first:
            x = x.permute(1, 0, 2)  # NLD -> LND
        mask = tower.attn_mask(length, x.dtype, x.device)
        use_checkpoint = self.grad_checkpoint and torch.is_grad_enabled()
        for k, block in enumerate(tower.blocks):
            if before_block is not None:
                x = before_block(k, x)
            if use_checkpoint:
                x = checkpoint(tower.run_block, block, x, mask, use_reentrant=False)
            else:
                x = tower.run_block(block, x, mask)
        if not tower.batch_first:
            x = x.permute(1, 0, 2)
        x = tower.ln_final(x).type(self.dtype)
        return backbone.project_text(x[torch.arange(x.shape[0], device=x.device), pool])

    def encode_shared_prefix(self, prefix, groups, n_prompts):
        """Features of `n_prompts` prompts that all start with `prefix` (P, width) -> (n_prompts, D);
        or, given B prefixes (B, P, width), of every prompt after each -> (B, n_prompts, D).

        `groups`: (indices, tails, eot) triples; tails (G, S, width) are the embeddings of
        prompts `indices` (a list of ints) after the prefix and eot (G,) each one's EOT position in its tail
        (None: the last position for all). Positions after a prompt's EOT may be padding: the
        causal mask keeps them out of its feature. Same result as `forward` on the full
        prompts, up to float rounding.
        """
        if not self.truncate:
            raise ValueError("encode_shared_prefix relies on the causal mask; build the TextEncoder with "
                             "truncate=True")
        if not self.tower.plain_blocks:
            raise ValueError("encode_shared_prefix runs the attention of CLIP-style blocks by parts; this text "
                             "tower's blocks are of another kind (run whole prompts instead)")
        backbone, tower = self.backbone[0], self.tower
        batched = prefix.dim() == 3  # (B, P, width): B prefixes, each followed by every prompt
        n_prefix = prefix.shape[-2]
        positions = tower.positional_embedding.type(self.dtype)
        if batched:
            x = (prefix + positions[:n_prefix]).permute(1, 0, 2)  # (P, B, width)
        else:
            x = (prefix + positions[:n_prefix]).unsqueeze(1)  # (P, 1, width)
        n_batch = x.shape[1]
        past = []
        blocks = list(tower.blocks)
        for i, block in enumerate(blocks):
            if i + 1 < len(blocks):
                x, kv = _run_block_after(block, x)
            else:  # the last block's output at the prefix is never read: only its keys/values
                y = block.ln_1(x)
                kv = F.linear(y, block.attn.in_proj_weight, block.attn.in_proj_bias).chunk(3, dim=-1)[1:]
            past.append(kv)

        order, features = [], []
        for indices, tails, eot in groups:
            length = tails.shape[1]
            x = (tails + positions[n_prefix:n_prefix + length]).permute(1, 0, 2)  # (S, G, width)
            if batched:  # (S, B * G, width), prefix-major
                x = x.repeat(1, n_batch, 1)
                eot = None if eot is None else eot.repeat(n_batch)
            for block, kv in zip(blocks, past):
                x, _ = _run_block_after(block, x, kv)
            x = x[-1] if eot is None else x[eot, torch.arange(x.shape[1], device=x.device)]
            x = backbone.project_text(tower.ln_final(x).type(self.dtype))
            features.append(x.view(n_batch, len(indices), -1) if batched else x)
            order.extend(indices)
        # Checked on the host, from the indices as given: no wait on the device at every step.
        if sorted(order) != list(range(n_prompts)):
            raise ValueError(f"groups must cover prompts 0..{n_prompts - 1} once each")
        features = torch.cat(features, dim=1 if batched else 0)
        inverse = torch.argsort(torch.as_tensor(order)).to(features.device)
        return features[:, inverse] if batched else features[inverse]
