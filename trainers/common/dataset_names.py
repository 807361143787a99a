"""Dataset config stems (`dtd`, as in configs/datasets/dtd.yaml) and DATASET.NAME values."""
import os.path as osp

import yaml

DATASET_CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), "configs", "datasets")


def dataset_name_of_stem(stem):
    """DATASET.NAME written in configs/datasets/<stem>.yaml; a name that is no stem is returned as is."""
    path = osp.join(DATASET_CONFIG_DIR, f"{stem}.yaml")
    if not osp.isfile(path):
        return stem
    with open(path) as f:
        return yaml.safe_load(f)["DATASET"]["NAME"]
