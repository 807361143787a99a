from .defaults import _C as cfg_default
from .merge import merge_from_file, merge_from_list


def get_cfg_default():
    """A fresh copy of the default config tree (callers may mutate it freely)."""
    return cfg_default.clone()
