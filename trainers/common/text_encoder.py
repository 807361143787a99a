"""CLIP's text tower applied to token *embeddings* (so learned prompt vectors can be fed in).

Same computation as `clip.model.CLIP.encode_text` after its embedding lookup (SPEC 5):
add the positional embedding, run the transformer, `ln_final`, take the feature at the EOT
position (`tokens.argmax(-1)`, the EOT id is the largest in the vocabulary) and project.

Speed-up: the text transformer is causal, so the EOT feature depends only on positions up
to EOT. By default the transformer therefore runs on sequences cut after the longest EOT in
the batch instead of all 77 positions (typically 20-30 for CoOp prompts). The result is the
same up to float rounding; `truncate=False` runs the full length.

The blocks are run here (with a sliced causal mask passed per call) instead of through
`ResidualAttentionBlock.forward`, because that forward applies the block's stored 77x77
`attn_mask`. Nothing in the shared CLIP model is modified, so `encode_text` and other
trainers holding the same model keep working.
"""
import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def _run_block(block, x, attn_mask):
    """One `clip.model.ResidualAttentionBlock` on x (L, N, D) with an explicit mask."""
    y = block.ln_1(x)
    x = x + block.attn(y, y, y, need_weights=False, attn_mask=attn_mask)[0]
    return x + block.mlp(block.ln_2(x))


def _check_causal(transformer):
    """Truncation is exact only for causal masks; refuse anything else up front."""
    for i, block in enumerate(transformer.resblocks):
        mask = block.attn_mask
        causal = mask is not None and mask.dim() == 2 and mask.shape[0] == mask.shape[1]
        if causal:
            upper = torch.ones_like(mask, dtype=torch.bool).triu(1)
            causal = bool(torch.isneginf(mask[upper]).all()) and bool((mask[~upper] == 0).all())
        if not causal:
            raise ValueError(
                f"text transformer block {i} has no causal 77x77 attention mask, so truncating "
                "prompts after EOT would change the result; build the TextEncoder with "
                "truncate=False (config TRAINER.COOP.TRUNCATE_TEXT False)"
            )


class TextEncoder(nn.Module):
    """Encode prompt embeddings (N, 77, width) with the CLIP text tower -> (N, embed_dim).

    Holds references to (not copies of) the CLIP text modules, in the CLIP model's dtype.
    `truncate`: run only up to the longest EOT position (exact, faster, less memory).
    `grad_checkpoint`: recompute each block in backward instead of storing its activations
    (for very many classes: memory per step drops to about one block's worth).
    """

    def __init__(self, clip_model, truncate=True, grad_checkpoint=False):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.dtype = clip_model.dtype
        self.truncate = truncate
        self.grad_checkpoint = grad_checkpoint
        if truncate:
            _check_causal(self.transformer)

    def forward(self, prompts, tokenized_prompts):
        eot = tokenized_prompts.argmax(dim=-1)
        length = int(eot.max()) + 1 if self.truncate else prompts.shape[1]

        x = prompts[:, :length] + self.positional_embedding[:length].type(self.dtype)
        x = x.permute(1, 0, 2)  # NLD -> LND, as CLIP's transformer expects
        use_checkpoint = self.grad_checkpoint and torch.is_grad_enabled()
        for block in self.transformer.resblocks:
            mask = block.attn_mask
            if mask is not None:
                mask = mask[:length, :length].to(dtype=x.dtype, device=x.device)
            if use_checkpoint:
                x = checkpoint(_run_block, block, x, mask, use_reentrant=False)
            else:
                x = _run_block(block, x, mask)
        x = x.permute(1, 0, 2)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection
