"""Caltech101: 100 classes (the two background/duplicate face folders are left out)."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset


@DATASET_REGISTRY.register()
class Caltech101(SplitFileDataset):
    dataset_dir = "caltech-101"
    image_dir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    ignored_folders = ("BACKGROUND_Google", "Faces_easy")
    new_cnames = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}
