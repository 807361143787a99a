"""Procedural image-caption pairs for pretraining the tiny CLIP (trainers/common/tiny_pretrained.py).

Each scene is one to three copies of a shape in one colour, small or large, placed left, right,
at the top, at the bottom or in the middle, drawn like the demo benchmarks' images
(`datasets.demo_shapes_generate`: gradient background, pixel noise, distractor strokes). Its
caption comes from one of several templates and names some of those attributes, so the model
learns the colour and shape words the demo's class names use.

Scenes are drawn from seeds at or above `SCENE_SEED_BASE`; the demo benchmarks seed their
images with numbers far below it, so no pretraining image is a demo image.
"""
import math
import random

import numpy as np
from PIL import Image, ImageDraw

from .demo_shapes_generate import COLOURS, SUPERSAMPLE, _background, _jitter, draw_shape

# The demo's colours plus a few more, so "red" is learnt against more than five alternatives.
CAPTION_COLOURS = {**COLOURS, "pink": (245, 120, 185), "brown": (125, 75, 35), "white": (245, 245, 245),
                   "black": (20, 20, 20), "cyan": (40, 210, 225)}
SHAPES = ("circle", "square", "triangle", "star", "heart", "hexagon")
SIZES = {"small": (0.12, 0.2), "large": (0.28, 0.4)}  # radius as a fraction of the image side
POSITIONS = {"on the left": (0.28, 0.5), "on the right": (0.72, 0.5), "at the top": (0.5, 0.28),
             "at the bottom": (0.5, 0.72), "in the middle": (0.5, 0.5)}
COUNT_WORDS = {1: "a", 2: "two", 3: "three"}
# The demo's prompt ("a drawing of a {}.") is one of them, but most are not.
TEMPLATES = (
    "a drawing of a {colour} {shape}.",
    "a {colour} {shape}.",
    "a {size} {colour} {shape}.",
    "a {colour} {shape} {position}.",
    "a picture of a {shape} that is {colour}.",
    "a {shape}.",
    "something {colour}.",
    "a {size} {shape} {position}.",
)
SCENE_SEED_BASE = 1 << 40


def sample_scene(rng):
    count = rng.choice((1, 1, 1, 2, 3))
    return {"colour": rng.choice(sorted(CAPTION_COLOURS)), "shape": rng.choice(SHAPES),
            "size": rng.choice(sorted(SIZES)) if count == 1 else "small",
            "position": rng.choice(sorted(POSITIONS)) if count == 1 else None, "count": count}


def caption(scene, rng):
    if scene["count"] > 1:  # a count replaces size and position, which several copies do not have
        return f"{COUNT_WORDS[scene['count']]} {scene['colour']} {scene['shape']}s."
    return rng.choice(TEMPLATES).format(**scene)


def draw_scene(scene, size, rng):
    big = size * SUPERSAMPLE
    image = _background(big, rng)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(0, 3)):
        draw.line([rng.uniform(0, big) for _ in range(4)], fill=_jitter((128, 128, 128), rng, 60),
                  width=max(1, big // 100))
    low, high = SIZES[scene["size"]]
    for _ in range(scene["count"]):
        r = rng.uniform(low, high) * big
        if scene["position"] is None:
            cx, cy = rng.uniform(r, big - r), rng.uniform(r, big - r)
        else:
            fx, fy = POSITIONS[scene["position"]]
            cx = min(max(fx * big + rng.uniform(-0.08, 0.08) * big, r), big - r)
            cy = min(max(fy * big + rng.uniform(-0.08, 0.08) * big, r), big - r)
        draw_shape(draw, scene["shape"], cx, cy, r, rng.uniform(0, 2 * math.pi),
                   _jitter(CAPTION_COLOURS[scene["colour"]], rng))
    return image.resize((size, size), Image.LANCZOS)


def scene_rng(seed, index):
    return random.Random(SCENE_SEED_BASE + seed * 10_000_019 + index)


def image_caption_pair(seed, index, size, noise=0.0):
    """The pair number `index` of pretraining stream `seed`: (uint8 HxWx3 array, caption).

    With probability `noise` the caption describes another, random scene, as web captions often
    miss their image; this keeps the tiny CLIP's zero-shot accuracy short of perfect.
    """
    rng = scene_rng(seed, index)
    scene = sample_scene(rng)
    text = caption(scene, rng)
    if rng.random() < noise:
        text = caption(sample_scene(rng), rng)
    return np.asarray(draw_scene(scene, size, rng)), text
