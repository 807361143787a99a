"""Draw the demo benchmarks: coloured shapes, named for what they are (DemoShapes) or not (DemoLandUse).

    python -m datasets.demo_shapes_generate --root DATA [--size 224] [--train 16 --val 4 --test 10]
        [--task demo_shapes|demo_land_use]

Writes `DATA/demo_shapes/` laid out like a real benchmark (`images/<class>/*.jpg` and
`split_zhou_DemoShapes.json`, read by `datasets.demo_shapes.DemoShapes`) plus `generator.json`,
the settings it was drawn with (`--task demo_land_use`: `DATA/demo_land_use/`, read by
`datasets.demo_land_use.DemoLandUse`). Every image comes from its own RNG seeded by (seed, class,
index), so the same settings give the same pixels. The tree is built in a temporary folder
and renamed when complete, so an interrupted run never leaves a half dataset that looks whole;
an existing folder drawn with other settings is an error, never overwritten.
"""
import argparse
import math
import os
import random
import shutil
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from dassl.utils import read_json, write_json

from . import demo_land_use
from .demo_shapes import CLASSES, FOLDER, IMAGE_DIR, SPLIT_FILE, class_folder
from .split_files import Record, Splits, write_split

SETTINGS_FILE = "generator.json"
GENERATOR_VERSION = 1  # bump when the drawing changes, so old folders are not taken for new ones

COLOURS = {
    "red": (220, 30, 35),
    "blue": (35, 75, 225),
    "green": (30, 170, 60),
    "yellow": (245, 215, 30),
    "purple": (140, 50, 190),
    "orange": (245, 130, 20),
}
JPEG_QUALITY = 92
SUPERSAMPLE = 2  # draw at 2x and downsample: smooth edges, closer to real images


def _regular_polygon(n, cx, cy, r, angle, inner=None):
    """Vertices of a regular n-gon (or an n-pointed star when `inner` radius is given)."""
    points = []
    steps = 2 * n if inner else n
    for k in range(steps):
        radius = inner if inner and k % 2 else r
        a = angle + 2 * math.pi * k / steps - math.pi / 2
        points.append((cx + radius * math.cos(a), cy + radius * math.sin(a)))
    return points


def _heart(cx, cy, r, angle):
    """The classic parametric heart, scaled to radius `r` and rotated by `angle`."""
    points = []
    for k in range(64):
        t = 2 * math.pi * k / 64
        x = 16 * math.sin(t) ** 3 / 17
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17
        points.append((cx + r * (x * math.cos(angle) - y * math.sin(angle)),
                       cy + r * (x * math.sin(angle) + y * math.cos(angle))))
    return points


def shape_outline(shape, cx, cy, r, angle):
    if shape == "square":
        return _regular_polygon(4, cx, cy, r, angle + math.pi / 4)
    if shape == "triangle":
        return _regular_polygon(3, cx, cy, r, angle)
    if shape == "star":
        return _regular_polygon(5, cx, cy, r, angle, inner=0.45 * r)
    if shape == "hexagon":
        return _regular_polygon(6, cx, cy, r, angle)
    if shape == "heart":
        return _heart(cx, cy, r, angle)
    raise ValueError(f"unknown shape {shape!r}")


def _jitter(colour, rng, amount=25):
    return tuple(max(0, min(255, c + rng.randint(-amount, amount))) for c in colour)


def _background(size, rng):
    """A gradient between two muted random colours with pixel noise: varied, never the class colour."""
    def muted():
        grey = rng.randint(60, 230)
        return np.array([grey + rng.randint(-30, 30) for _ in range(3)], dtype=np.float32)

    start, end = muted(), muted()
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    ramp = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
    pixels = start + (end - start) * ramp
    noise = np.random.RandomState(rng.randint(0, 2**31 - 1)).normal(0, 8, (size, size, 3))
    pixels = np.broadcast_to(pixels, (size, size, 3)) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def draw_image(classname, size, rng):
    """One image of `classname` ("<colour> <shape>"): random position, size, rotation, hue."""
    colour, shape = classname.split(" ")
    big = size * SUPERSAMPLE
    image = _background(big, rng)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(0, 3)):  # thin distractor strokes
        xy = [rng.uniform(0, big) for _ in range(4)]
        draw.line(xy, fill=_jitter((128, 128, 128), rng, 60), width=max(1, big // 100))
    r = rng.uniform(0.2, 0.38) * big
    cx, cy = rng.uniform(r, big - r), rng.uniform(r, big - r)
    fill = _jitter(COLOURS[colour], rng)
    angle = 0.0 if shape == "circle" else rng.uniform(0, 2 * math.pi)  # a circle draws no angle
    draw_shape(draw, shape, cx, cy, r, angle, fill)
    return image.resize((size, size), Image.LANCZOS)


def draw_shape(draw, shape, cx, cy, r, angle, fill):
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(shape_outline(shape, cx, cy, r, angle), fill=fill)


@dataclass(frozen=True)
class DemoTask:
    """One drawn benchmark: where it goes, its class names and what each class's images show."""
    name: str  # DATASET.NAME
    folder: str
    split_file: str
    classes: tuple
    drawn_as: tuple  # "<colour> <shape>" drawn for each class
    seed_offset: int  # keeps each task's images apart from the other tasks'


DEMO_SHAPES = DemoTask("DemoShapes", FOLDER, SPLIT_FILE, CLASSES, CLASSES, 0)
DEMO_LAND_USE = DemoTask("DemoLandUse", demo_land_use.FOLDER, demo_land_use.SPLIT_FILE, demo_land_use.CLASSES,
                         demo_land_use.DRAWN_AS, 1000)
TASKS = {task.folder: task for task in (DEMO_SHAPES, DEMO_LAND_USE)}


def settings(size, counts, seed, task=DEMO_SHAPES):
    wanted = {"version": GENERATOR_VERSION, "classes": list(task.classes), "size": size,
              "train": counts[0], "val": counts[1], "test": counts[2], "seed": seed}
    if task is not DEMO_SHAPES:  # DemoShapes folders drawn before there were other tasks stay valid
        wanted["drawn_as"] = list(task.drawn_as)
    return wanted


def _image_rng(seed, label, index):
    return random.Random(seed * 1_000_003 + label * 10_007 + index)


def _write_tree(target, wanted, task):
    counts = (wanted["train"], wanted["val"], wanted["test"])
    per_class = sum(counts)
    splits = Splits([], [], [])
    with tqdm(total=per_class * len(task.classes), desc=f"Drawing {task.name}", unit="img") as bar:
        for label, (classname, drawing) in enumerate(zip(task.classes, task.drawn_as)):
            folder = class_folder(classname)
            os.makedirs(os.path.join(target, IMAGE_DIR, folder))
            for index in range(per_class):
                name = f"{folder}_{index:04d}.jpg"
                rng = _image_rng(wanted["seed"] + task.seed_offset, label, index)
                draw_image(drawing, wanted["size"], rng).save(
                    os.path.join(target, IMAGE_DIR, folder, name), quality=JPEG_QUALITY)
                split = splits.train if index < counts[0] else (
                    splits.val if index < counts[0] + counts[1] else splits.test)
                split.append(Record(f"{IMAGE_DIR}/{folder}/{name}", label, classname))
                bar.update(1)
    write_split(splits, os.path.join(target, task.split_file), IMAGE_DIR)
    write_json(wanted, os.path.join(target, SETTINGS_FILE))


def generate(root, size=224, train=16, val=4, test=10, seed=0, task=DEMO_SHAPES):
    """Make (or reuse) `root/<task folder>`; returns that folder. Reuse needs the same settings."""
    if min(train, val, test) < 1 or size < 8:
        raise ValueError(f"{task.name} needs at least 1 train, val and test image per class and size >= 8 "
                         f"(got train={train}, val={val}, test={test}, size={size})")
    wanted = settings(size, (train, val, test), seed, task)
    target = os.path.join(os.path.abspath(root), task.folder)
    if os.path.exists(target):
        settings_path = os.path.join(target, SETTINGS_FILE)
        found = read_json(settings_path) if os.path.isfile(settings_path) else None
        if found != wanted:
            raise FileExistsError(
                f"{target} exists but was not drawn with these settings ({settings_path}: {found}; wanted "
                f"{wanted}). Delete that folder to redraw it, or use another data root.")
        print(f"{task.name}: reusing {target} ({len(task.classes)} classes, {train}/{val}/{test} images per class)")
        return target
    partial = target + ".partial"
    if os.path.exists(partial):  # our own leftover from an interrupted run: never a usable dataset
        print(f"{task.name}: removing {partial}, left by an interrupted run")
        shutil.rmtree(partial)
    _write_tree(partial, wanted, task)
    os.rename(partial, target)
    print(f"{task.name}: drew {len(task.classes)} classes x {train}/{val}/{test} train/val/test images "
          f"({size}x{size} px) into {target}")
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="data root (DATASET.ROOT); writes ROOT/<task>")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--train", type=int, default=16, help="train images per class")
    parser.add_argument("--val", type=int, default=4, help="val images per class")
    parser.add_argument("--test", type=int, default=10, help="test images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task", choices=sorted(TASKS), default=DEMO_SHAPES.folder,
                        help="which benchmark: demo_shapes (names describe the images) or demo_land_use (they do not)")
    args = parser.parse_args(argv)
    generate(args.root, args.size, args.train, args.val, args.test, args.seed, TASKS[args.task])


if __name__ == "__main__":
    main()
