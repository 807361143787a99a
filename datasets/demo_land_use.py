"""DemoLandUse: the demo's benchmark whose class names do not describe its images.

Drawn shapes (as in DemoShapes) filed under EuroSAT-like land-use names: "forest" holds yellow
squares. CLIP's prior (the names in a prompt) says little about these images, as EuroSAT's names
say little to CLIP about satellite tiles, so a method must learn the task from its few shots;
an adapter that only nudges frozen image features towards the fixed name embeddings cannot.
"""
from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset
from .demo_shapes import class_folder

FOLDER = "demo_land_use"
IMAGE_DIR = "images"
SPLIT_FILE = "split_zhou_DemoLandUse.json"
CLASSES = ("annual crop land", "forest", "highway or road", "industrial buildings", "pasture land", "river")
# What each class's images show (the same drawing code as DemoShapes, other colour-shape pairs).
DRAWN_AS = ("blue circle", "yellow square", "red triangle", "green star", "orange heart", "purple hexagon")


@DATASET_REGISTRY.register()
class DemoLandUse(SplitFileDataset):
    dataset_dir = FOLDER
    image_dir = IMAGE_DIR
    split_file = SPLIT_FILE
    new_cnames = {class_folder(c): c for c in CLASSES}
