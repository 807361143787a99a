"""ImageNet-Sketch: 50k sketches in the 1000 ImageNet wnid folders (test only)."""
from dassl.data.datasets import DATASET_REGISTRY

from .imagenet_variants import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_dir = "images"
