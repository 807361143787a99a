"""Oxford-IIIT Pets: 37 breeds; the class name is the lower-cased breed from the file name."""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset
from .split_files import Record, Splits, join_rel, read_lines, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(SplitFileDataset):
    dataset_dir = "oxford_pets"
    image_dir = "images"
    split_file = "split_zhou_OxfordPets.json"

    @classmethod
    def build_split(cls, dataset_dir, rng):
        """annotations/trainval.txt -> 80/20 train/val per class; annotations/test.txt -> test."""
        trainval = cls.read_annotations(dataset_dir, "trainval.txt")
        test = cls.read_annotations(dataset_dir, "test.txt")
        train, val = split_trainval(trainval, rng)
        return Splits(train, val, test)

    @classmethod
    def read_annotations(cls, dataset_dir, name):
        """Lines 'Image CLASS-ID SPECIES BREED-ID' (ids 1-based), e.g. 'Abyssinian_100 1 1 1'."""
        path = os.path.join(dataset_dir, "annotations", name)
        records = []
        for line in read_lines(path, "Oxford Pets annotation list"):
            if line.startswith("#"):
                continue
            imname, label = line.split(" ")[:2]
            breed = "_".join(imname.split("_")[:-1]).lower()
            records.append(Record(join_rel(cls.image_dir, imname + ".jpg"), int(label) - 1, breed))
        return records
