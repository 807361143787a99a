from dassl.config.merge import ConfigError
from dassl.utils import Registry

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg):
    if not cfg.DATASET.NAME:
        raise ConfigError("DATASET.NAME is empty: pass --dataset-config-file configs/datasets/<name>.yaml "
                         f"or set DATASET.NAME to one of {DATASET_REGISTRY.registered_names()}")
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
