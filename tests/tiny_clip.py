"""Tiny but real CLIP models with random weights, saved the way OpenAI ships them.

Tests load these through the project's real loading path (`torch.jit.load` fails,
`torch.load` + `clip.model.build_model`), so nothing about CLIP is mocked.
"""
import os

import torch
from clip.model import CLIP

from trainers.common.clip_loader import TOY_ARCHITECTURES

TINY_CONFIGS = {"rn": TOY_ARCHITECTURES["tiny-rn"], "vit": TOY_ARCHITECTURES["tiny-vit"]}


def build_tiny_clip(arch="rn", seed=0):
    """Return a freshly initialised tiny `clip.model.CLIP` (fp32, random weights)."""
    torch.manual_seed(seed)
    return CLIP(**TINY_CONFIGS[arch])


def build_tiny_backbone(arch="rn", seed=0):
    """`build_tiny_clip` behind the project's model interface (`trainers.common.backbone`)."""
    from trainers.common.backbone import backbone_from_clip_model

    return backbone_from_clip_model(build_tiny_clip(arch, seed), f"tiny-{arch}")


def save_tiny_clip(directory, arch="rn", seed=0, name=None):
    """Save a tiny CLIP state dict (fp16, like the official files) and return its path."""
    model = build_tiny_clip(arch, seed)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = os.path.join(str(directory), name or f"tiny_clip_{arch}_seed{seed}.pt")
    torch.save(state, path)
    return path
