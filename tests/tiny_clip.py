"""Tiny but real CLIP models with random weights, saved the way OpenAI ships them.

Tests load these through the project's real loading path (`torch.jit.load` fails,
`torch.load` + `clip.model.build_model`), so nothing about CLIP is mocked.
"""
import os

import torch
from clip.model import CLIP

# The vocabulary must stay the real one (49408) so clip.tokenize() ids fit.
TINY_CONFIGS = {
    # ModifiedResNet: width 16 -> 8 attention-pool heads; 32 px input -> 1x1 grid.
    "rn": dict(embed_dim=64, image_resolution=32, vision_layers=(1, 1, 1, 1), vision_width=16,
               vision_patch_size=None, context_length=77, vocab_size=49408,
               transformer_width=64, transformer_heads=1, transformer_layers=2),
    # VisionTransformer: 2 layers, width 64 (1 head), 32 px with 16 px patches -> 2x2 grid.
    "vit": dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64,
                vision_patch_size=16, context_length=77, vocab_size=49408,
                transformer_width=64, transformer_heads=1, transformer_layers=2),
}


def build_tiny_clip(arch="rn", seed=0):
    """Return a freshly initialised tiny `clip.model.CLIP` (fp32, random weights)."""
    torch.manual_seed(seed)
    return CLIP(**TINY_CONFIGS[arch])


def save_tiny_clip(directory, arch="rn", seed=0, name=None):
    """Save a tiny CLIP state dict (fp16, like the official files) and return its path."""
    model = build_tiny_clip(arch, seed)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = os.path.join(str(directory), name or f"tiny_clip_{arch}_seed{seed}.pt")
    torch.save(state, path)
    return path
