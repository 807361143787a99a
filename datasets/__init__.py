"""Benchmark datasets (CoOp's eleven, ImageNet and its four shift sets) and ImageFolder for
the user's own data. Importing the package registers every class in DATASET_REGISTRY; it is
imported from the repository root (train.py's folder), never installed."""
from . import (caltech101, dtd, eurosat, fgvc_aircraft, food101, image_folder, imagenet, imagenet_a,  # noqa: F401
               imagenet_r, imagenet_sketch, imagenetv2, oxford_flowers, oxford_pets, stanford_cars, sun397,
               ucf101)
from . import demo_land_use, demo_shapes  # noqa: F401,E402  (the demo's built-in benchmarks)
