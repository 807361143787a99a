"""ImageNet-A: 7,500 natural adversarial images of 200 ImageNet classes (test only)."""
from dassl.data.datasets import DATASET_REGISTRY

from .imagenet_variants import ImageNetSubset


@DATASET_REGISTRY.register()
class ImageNetA(ImageNetSubset):
    dataset_dir = "imagenet-adversarial"
    image_dir = "imagenet-a"
