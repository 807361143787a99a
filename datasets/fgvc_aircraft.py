"""FGVC-Aircraft (variant level): the txt lists shipped with the data are the split."""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .base import BenchmarkDataset
from .split_files import DatasetError, Record, Splits, join_rel, read_lines


@DATASET_REGISTRY.register()
class FGVCAircraft(BenchmarkDataset):
    dataset_dir = "fgvc_aircraft"
    image_dir = "images"

    @classmethod
    def split_source(cls):
        return "images_variant_{train,val,test}.txt"

    @classmethod
    def read_splits(cls, dataset_dir, may_write=True):
        """variants.txt gives label order; lines '<image id> <variant, may contain spaces>'."""
        classnames = read_lines(os.path.join(dataset_dir, "variants.txt"), "FGVC-Aircraft class list")
        cname2lab = {c: i for i, c in enumerate(classnames)}
        splits = []
        for split in Splits._fields:
            path = os.path.join(dataset_dir, f"images_variant_{split}.txt")
            records = []
            for line in read_lines(path, "FGVC-Aircraft split list"):
                imname, _, variant = line.partition(" ")
                if variant not in cname2lab:
                    raise DatasetError(f"{path}: variant '{variant}' (line '{line}') is not in variants.txt.")
                records.append(Record(join_rel(cls.image_dir, imname + ".jpg"), cname2lab[variant], variant))
            splits.append(records)
        return Splits(*splits)
