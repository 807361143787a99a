"""ImageNet-R: 30,000 renditions (art, cartoons, ...) of 200 ImageNet classes (test only)."""
from dassl.data.datasets import DATASET_REGISTRY

from .imagenet_variants import ImageNetSubset


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetSubset):
    dataset_dir = "imagenet-rendition"
    image_dir = "imagenet-r"
