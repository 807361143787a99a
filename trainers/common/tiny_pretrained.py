"""Tiny CLIPs pretrained here, on procedural image-caption pairs: real accuracies without the network.

    python -m trainers.common.tiny_pretrained [--vit] [--seed S] [--force]

Trains a small `clip.model.CLIP` (`ARCHITECTURE`, a ModifiedResNet image encoder; with `--vit`
`VIT_ARCHITECTURE`, a VisionTransformer, for the methods that prompt the image encoder's layers)
with CLIP's own objective (symmetric InfoNCE
over a batch, learnable logit scale) on pairs from `datasets.demo_captions`: drawn shapes
with captions naming their colour, shape, size, position and count. It takes a minute or two on
2 CPU cores. Not OpenAI's CLIP: it knows only these drawings and words, which is enough for
accuracies that respond to what a few-shot method computes (the demo and the accuracy tests).

Runs select them with `MODEL.BACKBONE.NAME tiny-pretrained` or `tiny-vit-pretrained` and
`INPUT.SIZE (32, 32)`; the first run on a machine builds it. The weights are cached as a plain fp16 state dict (the format of the
official files, read by `clip_loader.read_state_dict` and `clip.model.build_model`) under
`$FEWSHOT_TINY_CLIP_DIR` (default ~/.cache/fewshot-clip/tiny-clip), named by a hash of every
setting, so changing a setting builds a new file and never reuses a stale one. The file is
written atomically, and a lock file makes parallel runs wait for one build instead of each
building it. The same settings give the same weights bit for bit: the torch thread count is
fixed during training, whatever the machine has.
"""
import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import time

import clip
import numpy as np
import torch
import torch.nn.functional as F
from clip.model import CLIP

from dassl.utils import atomic_write, read_json, write_json

from .architectures import TINY_PRETRAINED_ARCHITECTURE, TINY_VIT_PRETRAINED_ARCHITECTURE, TOY_ARCHITECTURES

NAME = "tiny-pretrained"  # MODEL.BACKBONE.NAME that selects it (clip_loader.TINY_PRETRAINED)
VIT_NAME = "tiny-vit-pretrained"  # the ViT one (clip_loader.TINY_VIT_PRETRAINED)
DIR_ENV = "FEWSHOT_TINY_CLIP_DIR"
DATA_VERSION = 1  # bump when datasets.demo_captions draws or words differently
THREADS = 2  # fixed so that the float reductions, hence the weights, do not depend on the machine
# CLIP's image normalisation, the one every run's test transform applies.
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)

# The tests' tiny ModifiedResNet CLIP (embed 64, 32 px, text width 64 with 2 layers).
ARCHITECTURE = TOY_ARCHITECTURES[TINY_PRETRAINED_ARCHITECTURE]
# A VisionTransformer of 4 layers (width 64, 8 px patches: 16 patch tokens + the class token) and a
# 4-layer text transformer, so that deep prompts have layers to go into.
VIT_ARCHITECTURE = TOY_ARCHITECTURES[TINY_VIT_PRETRAINED_ARCHITECTURE]


@dataclasses.dataclass(frozen=True)
class Settings:
    seed: int = 0
    steps: int = 60
    batch_size: int = 128
    pairs: int = 3000  # distinct image-caption pairs; batches are drawn from them
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 20
    caption_noise: float = 0.5  # share of captions that describe another scene

    name = NAME  # class attributes, not fields: the ResNet's key (its file name) stays as it was
    architecture = ARCHITECTURE
    file_prefix = "tiny-clip"
    truncate_text = False
    threads = THREADS

    def key(self):
        text = json.dumps({"settings": dataclasses.asdict(self), "architecture": self.architecture,
                           "data_version": DATA_VERSION, "threads": self.threads}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class ViTSettings(Settings):
    """The tiny ViT CLIP: same data and recipe, but its text side (token and position embeddings,
    text transformer, projection, temperature) starts from the tiny ResNet CLIP's, pretrained
    first if missing. A ViT image tower learns from scratch far slower than the ResNet (zero-shot
    near chance after the ResNet's step count); against a text side that already knows the
    words it aligns within a hundred steps."""
    steps: int = 150
    text_start: Settings = Settings()  # the ResNet CLIP whose text side it starts from (part of the key)
    name = VIT_NAME
    architecture = VIT_ARCHITECTURE
    file_prefix = "tiny-vit-clip"
    truncate_text = True  # captions end by token ~15 of 77: the causal text tower stops there
    # One thread: its ops are too small to gain from two, and two threads that meet at every op
    # crawl on a busy machine (about 0.3 s of CPU per step alone).
    threads = 1


SETTINGS = {NAME: Settings(), VIT_NAME: ViTSettings()}  # MODEL.BACKBONE.NAME -> its default settings


def cache_folder():
    return os.path.expanduser(os.environ.get(DIR_ENV) or os.path.join("~", ".cache", "fewshot-clip", "tiny-clip"))


def weights_path(settings=Settings()):
    return os.path.join(cache_folder(), f"{settings.file_prefix}-{settings.key()}.pt")


def info_path(weights):
    """The record next to the weights: settings, training time, final loss."""
    return weights[:-len(".pt")] + ".json"


def read_info(weights):
    return read_json(info_path(weights))


@contextlib.contextmanager
def fixed_threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_pairs(settings, size):
    """All pretraining pairs as a normalised image tensor and a token tensor."""
    from datasets.demo_captions import image_caption_pair  # the data lives with the demo datasets

    images = np.empty((settings.pairs, size, size, 3), dtype=np.uint8)
    captions = []
    for index in range(settings.pairs):
        images[index], text = image_caption_pair(settings.seed, index, size, settings.caption_noise)
        captions.append(text)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    pixels = (pixels - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return pixels, clip.tokenize(captions)


def _truncated_text_features(model, tokens):
    """`model.encode_text(tokens)` with the causal text tower run only up to the batch's last EOT
    (later positions cannot change the EOT features)."""
    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    x = (model.token_embedding(tokens[:, :length]) + model.positional_embedding[:length]).permute(1, 0, 2)
    for block in model.transformer.resblocks:
        mask = block.attn_mask[:length, :length].to(dtype=x.dtype)
        y = block.ln_1(x)
        x = x + block.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        x = x + block.mlp(block.ln_2(x))
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), eot] @ model.text_projection


def clip_loss(model, images, tokens, truncate_text=False):
    """CLIP's objective: cross-entropy of image->text and text->image matching over the batch.
    `truncate_text`: run the causal text tower only up to the batch's last EOT (the same function)."""
    image_features = F.normalize(model.encode_image(images), dim=-1)
    if truncate_text:
        text_features = _truncated_text_features(model, tokens)
    else:
        text_features = model.encode_text(tokens)
    text_features = F.normalize(text_features, dim=-1)
    logits = model.logit_scale.exp() * image_features @ text_features.t()
    target = torch.arange(len(images))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def learning_rate(settings, step):
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
    return settings.lr * 0.5 * (1 + np.cos(np.pi * progress))


def pretrain(settings=Settings(), log=print):
    """Train the tiny CLIP; returns (fp16 state dict as the official files hold it, info dict)."""
    start = time.time()
    with fixed_threads(settings.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = CLIP(**settings.architecture)
        if hasattr(settings, "text_start"):
            text = torch.load(ensure_weights(settings.text_start, log=log), map_location="cpu")
            model.load_state_dict({k: v.float() for k, v in text.items() if not k.startswith("visual.")},
                                  strict=False)
        pixels, tokens = make_pairs(settings, settings.architecture["image_resolution"])
        log(f"tiny CLIP: drew {settings.pairs} image-caption pairs in {time.time() - start:.0f} s")
        # No weight decay on gains, biases, embeddings and the temperature, as in CLIP.
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
        rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                       {"params": rest, "weight_decay": 0.0}], lr=settings.lr)
        order = torch.Generator().manual_seed(settings.seed)
        model.train()
        for step in range(settings.steps):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(settings, step)
            batch = torch.randint(0, settings.pairs, (settings.batch_size,), generator=order)
            loss = clip_loss(model, pixels[batch], tokens[batch], settings.truncate_text)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, np.log(100))  # CLIP's cap on the temperature
            if step % 20 == 0 or step == settings.steps - 1:
                log(f"tiny CLIP: step {step + 1}/{settings.steps} loss {loss.item():.3f} "
                    f"({time.time() - start:.0f} s)")
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    info = {"name": settings.name, "key": settings.key(), "settings": dataclasses.asdict(settings),
            "architecture": settings.architecture, "train_seconds": round(time.time() - start, 1),
            "final_loss": round(loss.item(), 4), "threads": settings.threads, "torch": torch.__version__}
    return state, info


@contextlib.contextmanager
def _build_lock(weights):
    with open(weights + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel builder waits here, then finds the file
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_weights(settings=Settings(), force=False, log=print):
    """Path of the cached weights, pretraining them first if they are missing (or `force`)."""
    weights = weights_path(settings)
    if os.path.isfile(weights) and not force:
        return weights
    os.makedirs(os.path.dirname(weights), exist_ok=True)
    with _build_lock(weights):
        if os.path.isfile(weights) and not force:
            return weights  # another process built it while this one waited
        log(f"tiny CLIP: pretraining {settings.name} (a minute or two on 2 CPU cores; once per machine) -> {weights}")
        state, info = pretrain(settings, log)
        write_json(info, info_path(weights))
        with atomic_write(weights) as f:  # the weights file last: its presence means complete
            torch.save(state, f)
        log(f"tiny CLIP: done in {info['train_seconds']:.0f} s (final loss {info['final_loss']:.3f})")
    return weights


def describe(weights):
    """One line for banners and tables: what these weights are."""
    info = read_info(weights)
    seconds, kind = info["train_seconds"], "ViT " if info.get("name") == VIT_NAME else ""
    return (f"a tiny {kind}CLIP trained here in {seconds:.0f} s on procedural captions of drawn shapes, "
            f"not OpenAI's")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vit", action="store_true", help=f"the ViT one ({VIT_NAME}) instead of {NAME}")
    parser.add_argument("--seed", type=int, default=Settings.seed)
    parser.add_argument("--force", action="store_true", help="pretrain again even if the weights are cached")
    args = parser.parse_args(argv)
    settings = (ViTSettings if args.vit else Settings)(seed=args.seed)
    weights = ensure_weights(settings, force=args.force)
    print(f"{weights}\n{describe(weights)}")


if __name__ == "__main__":
    main()
