"""Oxford Flowers 102: names from cat_to_name.json (1-based ids); labels 0-based."""
import os
from collections import OrderedDict

from dassl.data.datasets import DATASET_REGISTRY
from dassl.utils import read_json

from .base import SplitFileDataset
from .split_files import DatasetError, Record, join_rel, load_mat, split_per_class


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitFileDataset):
    dataset_dir = "oxford_flowers"
    image_dir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"

    @classmethod
    def build_split(cls, dataset_dir, rng):
        """imagelabels.mat gives image_{i:05d}.jpg its 1-based class; 50/20/30 per class,
        classes in order of first appearance (needs scipy to read the .mat)."""
        labels = load_mat(os.path.join(dataset_dir, "imagelabels.mat"), cls.__name__)["labels"][0]
        names_path = os.path.join(dataset_dir, "cat_to_name.json")
        if not os.path.isfile(names_path):
            raise DatasetError(f"OxfordFlowers: {names_path} is missing; it maps class ids to names "
                               "(see DATASETS.md, section OxfordFlowers).")
        names = read_json(names_path)
        groups = OrderedDict()
        for i, label in enumerate(labels):
            label = int(label)
            rec = Record(join_rel(cls.image_dir, f"image_{i + 1:05d}.jpg"), label - 1, names[str(label)])
            groups.setdefault(label, []).append(rec)
        return split_per_class(groups, rng)
