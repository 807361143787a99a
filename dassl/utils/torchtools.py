"""Checkpoint I/O (Dassl `dassl.utils.torchtools` API), with atomic writes and RNG state.

Every file is written through a temp file + rename, so a process killed mid-save leaves
the previous checkpoint loadable. The global RNG states are stored with each checkpoint so
that a resumed run draws the same shuffles and augmentations as an uninterrupted one.
"""
import os.path as osp
import random
import shutil
from collections import OrderedDict

import numpy as np
import torch

from .errors import CheckpointError
from .tools import atomic_write, mkdir_if_missing


def capture_rng_state():
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def strip_module_prefix(state_dict):
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""):
    """Save `state` as `save_dir/<model_name>` (default `model.pth.tar-<epoch>`) and point
    `save_dir/checkpoint` at it."""
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = strip_module_prefix(state["state_dict"])
    if not model_name:
        model_name = "model.pth.tar-" + str(state["epoch"])
    fpath = osp.join(save_dir, model_name)
    with atomic_write(fpath, "wb") as f:
        torch.save(state, f)
    with atomic_write(osp.join(save_dir, "checkpoint"), "w") as f:
        f.write(f"{osp.basename(fpath)}\n")
    if is_best:
        best = osp.join(save_dir, "model-best.pth.tar")
        with atomic_write(best, "wb") as f, open(fpath, "rb") as src:
            shutil.copyfileobj(src, f)
    return fpath


def load_checkpoint(fpath):
    """Load a checkpoint on CPU; a missing, truncated or non-checkpoint file raises
    `CheckpointError` naming it."""
    if fpath is None or not osp.isfile(fpath):
        raise CheckpointError(f'No checkpoint file at "{fpath}"')
    try:
        # Our checkpoints hold numpy RNG state and plain Python objects, so full unpickling
        # is needed; only load checkpoints you trust (as with any .pth file).
        checkpoint = torch.load(fpath, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated, corrupted, or not a torch file at all
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f'Cannot read checkpoint "{fpath}": it is truncated or not a PyTorch checkpoint '
                              f"({reason}). Use a complete copy of the file.") from e
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'"{fpath}" holds a {type(checkpoint).__name__}, not a checkpoint dict; '
                              "point to a file saved by this toolkit or by Dassl.")
    return checkpoint


def read_checkpoint_pointer(fdir):
    """Return the file name recorded in `fdir/checkpoint`, or None."""
    pointer = osp.join(fdir, "checkpoint")
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.readline().strip()
    return name or None


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None, fname=None, checkpoint=None):
    """Load model/optimizer/scheduler/RNG state from the checkpoint named in `fdir/checkpoint`
    (or `fname`; `checkpoint` if already read; `model` None if its weights are loaded already)
    and return the epoch to start from."""
    fname = fname or read_checkpoint_pointer(fdir)
    fpath = osp.join(fdir, fname)
    if checkpoint is None:
        print(f'Loading checkpoint from "{fpath}"')
        checkpoint = load_checkpoint(fpath)
    if model is not None:
        model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    if checkpoint.get("rng_state") is not None:
        restore_rng_state(checkpoint["rng_state"])
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def load_pretrained_weights(model, weight_path):
    """Load matching keys (name and shape) from a checkpoint or raw state dict into `model`."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    state_dict = strip_module_prefix(state_dict)
    model_dict = model.state_dict()
    matched = {k: v for k, v in state_dict.items() if k in model_dict and model_dict[k].size() == v.size()}
    if not matched:
        raise RuntimeError(f'No key of "{weight_path}" matches the model (names or shapes differ)')
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    discarded = sorted(set(state_dict) - set(matched))
    print(f'Loaded pretrained weights from "{weight_path}"')
    if discarded:
        print(f"** Layers discarded (name or shape mismatch): {discarded}")


def count_num_param(model):
    return sum(p.numel() for p in model.parameters())
