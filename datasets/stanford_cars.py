"""Stanford Cars: 196 models named "<year> <make model>"; split paths are relative to the
dataset folder (cars_train/..., cars_test/...), not to an image folder."""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset
from .split_files import Record, Splits, join_rel, load_mat, split_trainval


def year_first(meta_name):
    """'AM General Hummer SUV 2000' -> '2000 AM General Hummer SUV'."""
    words = meta_name.split(" ")
    return " ".join([words[-1]] + words[:-1])


@DATASET_REGISTRY.register()
class StanfordCars(SplitFileDataset):
    dataset_dir = "stanford_cars"
    image_dir = ""
    split_file = "split_zhou_StanfordCars.json"

    @classmethod
    def build_split(cls, dataset_dir, rng):
        """devkit .mat annotations (needs scipy): cars_train -> 80/20 train/val, cars_test -> test."""
        meta = load_mat(os.path.join(dataset_dir, "devkit", "cars_meta.mat"), cls.__name__)["class_names"][0]
        trainval = cls.read_annotations(dataset_dir, "cars_train", os.path.join("devkit", "cars_train_annos.mat"), meta)
        test = cls.read_annotations(dataset_dir, "cars_test", "cars_test_annos_withlabels.mat", meta)
        train, val = split_trainval(trainval, rng)
        return Splits(train, val, test)

    @classmethod
    def read_annotations(cls, dataset_dir, image_folder, anno_file, meta):
        annos = load_mat(os.path.join(dataset_dir, anno_file), cls.__name__)["annotations"][0]
        records = []
        for anno in annos:
            label = int(anno["class"][0, 0]) - 1
            records.append(Record(join_rel(image_folder, str(anno["fname"][0])), label, year_first(str(meta[label][0]))))
        return records
