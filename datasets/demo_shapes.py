"""DemoShapes: the demo's small built-in benchmark (drawn by `datasets.demo_shapes_generate`).

Six classes of coloured shapes that CLIP can name ("red circle", "yellow star", ...), read
exactly like the real benchmarks: `demo_shapes/images/<class>/*.jpg` listed by
`split_zhou_DemoShapes.json`.
"""
from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset

FOLDER = "demo_shapes"
IMAGE_DIR = "images"
SPLIT_FILE = "split_zhou_DemoShapes.json"
# "<colour> <shape>": one colour per shape, so either cue names the class.
CLASSES = ("red circle", "blue square", "green triangle", "yellow star", "purple heart", "orange hexagon")


def class_folder(classname):
    return classname.replace(" ", "_")


@DATASET_REGISTRY.register()
class DemoShapes(SplitFileDataset):
    dataset_dir = FOLDER
    image_dir = IMAGE_DIR
    split_file = SPLIT_FILE
    # Only used if the split file was deleted: folders "red_circle" -> class "red circle".
    new_cnames = {class_folder(c): c for c in CLASSES}
