"""What a run chose and what its saved module was built from.

`RunRecordMixin` keeps `self.run_record` (searches, chosen values, tuned parameter count), which
the engine adds to result.json after the final test. `SourceStampedModule` stores, inside its own
state_dict, the dataset, shots, seed and backbone it was built from, so loading it into a run
with other settings can stop with a message instead of silently mixing runs.
"""

import torch.nn as nn

from dassl.utils import load_checkpoint
from dassl.utils.errors import UserError

SOURCE_KEYS = ("dataset", "shots", "seed", "backbone")


def run_source(cfg):
    return {"dataset": cfg.DATASET.NAME, "shots": int(cfg.DATASET.NUM_SHOTS), "seed": int(cfg.SEED),
            "backbone": cfg.MODEL.BACKBONE.NAME}


def describe_source(source, keys=SOURCE_KEYS):
    return ", ".join(f"{key} {source.get(key, '?')}" for key in keys)


def trainable_parameter_count(modules):
    return sum(p.numel() for module in modules for p in module.parameters() if p.requires_grad)


class SourceStampedModule(nn.Module):
    """A module whose state_dict carries `source` (the `_extra_state` entry)."""

    def __init__(self):
        super().__init__()
        self.source = {}

    def get_extra_state(self):
        return dict(self.source)

    def set_extra_state(self, state):
        self.source = dict(state)


def check_checkpoint_source(path, cfg, what, keys=SOURCE_KEYS):
    """Raise a UserError when the stamped module saved in `path` was built for other settings."""
    state_dict = load_checkpoint(path).get("state_dict", {})
    stored = next((v for k, v in state_dict.items() if k.endswith("_extra_state")), None)
    if not isinstance(stored, dict):
        raise UserError(f'"{path}" is not a {what} checkpoint of this toolkit (no record of what it '
                        f"was built from); point --model-dir at the output folder of a {what} run")
    current = run_source(cfg)
    if any(stored.get(key) != current[key] for key in keys):
        raise UserError(
            f'"{path}" holds a {what} built from {describe_source(stored, keys)}, but this run has '
            f"{describe_source(current, keys)}. Evaluate it with the settings it was built with "
            f"(--seed {stored.get('seed')} DATASET.NUM_SHOTS {stored.get('shots')}), or point "
            f"--model-dir at the run made with {describe_source(current, keys)}.")


class RunRecordMixin:
    """Mix into a trainer before its base class: the engine adds `run_record` to result.json."""

    def init_run_record(self, **entries):
        self.run_record.update(entries)  # keeps what the engine recorded already (e.g. the backbone)
