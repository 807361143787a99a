"""SUN397: scene classes from nested paths, e.g. a/abbey -> "abbey", b/bakery/shop -> "shop bakery"."""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset
from .split_files import DatasetError, Record, Splits, join_rel, read_lines, split_trainval


def scene_name(class_path):
    """Drop the leading letter folder, then put qualifiers (indoor/outdoor/shop...) first."""
    return " ".join(class_path.split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(SplitFileDataset):
    dataset_dir = "sun397"
    image_dir = "SUN397"
    split_file = "split_zhou_SUN397.json"

    @classmethod
    def build_split(cls, dataset_dir, rng):
        """ClassName.txt (label order) + Training_01.txt -> 80/20 train/val; Testing_01.txt -> test."""
        classes = [line[1:] for line in read_lines(os.path.join(dataset_dir, "ClassName.txt"), "SUN397 class list")]
        cname2lab = {c: i for i, c in enumerate(classes)}
        trainval = cls.read_list(dataset_dir, "Training_01.txt", cname2lab)
        test = cls.read_list(dataset_dir, "Testing_01.txt", cname2lab)
        train, val = split_trainval(trainval, rng)
        return Splits(train, val, test)

    @classmethod
    def read_list(cls, dataset_dir, name, cname2lab):
        path = os.path.join(dataset_dir, name)
        records = []
        for line in read_lines(path, "SUN397 partition list"):
            imname = line[1:]  # drop the leading "/"
            class_path = os.path.dirname(imname)
            if class_path not in cname2lab:
                raise DatasetError(f"{path}: class '{class_path}' of {line} is not in ClassName.txt.")
            records.append(Record(join_rel(cls.image_dir, imname), cname2lab[class_path], scene_name(class_path)))
        return records
