"""What the feature cache's keys are made of: the image encoder's fingerprint, a transform's
description, the seed of each training view, and each image file's content digest (memoised
under the file's stat, so a cache hit does not re-read a whole dataset)."""
import hashlib
import json
import os
import time

import torch
from tqdm import tqdm

from dassl.data.data_manager import UnreadableImage
from dassl.utils.errors import UserError
from dassl.utils.tools import atomic_write, file_sha256

CACHE_ENV = "FEWSHOT_FEATURE_CACHE"
DIGEST_DIR = "file-digests"
# A file's digest is memoised under its stat only when the file has not changed for this
# long: a later write then necessarily moves its ctime, even on coarse-clock file systems.
DIGEST_TRUST_AGE_S = 2.0


def _sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


class FeatureCacheRootError(UserError, OSError):
    """The cache root cannot hold files (read-only file system, no permission, a file in the way)."""


def make_dirs(path):
    """Create a cache folder, or say which setting points at an unusable place."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise FeatureCacheRootError(f"Feature cache: cannot create {path} ({err}). Point TRAIN.FEATURE_CACHE.ROOT or "
                      f"${CACHE_ENV} at a writable folder, or set TRAIN.FEATURE_CACHE.ENABLED False.") from err


def key(description):
    """Short folder name for a JSON-able description (the full description is in each shard)."""
    return _sha256_hex(json.dumps(description, sort_keys=True).encode())[:24]


# ----------------------------------------------------------------------------- fingerprints
def encoder_fingerprint(visual, backbone_name, device):
    """What identifies an image encoder's numbers: name, weights, dtype, device type.

    Hashes the visual tower's state dict (parameters and BatchNorm buffers) as it will run,
    so a different weights file, a re-initialised model or an fp16/fp32 cast all differ.
    """
    digest = hashlib.sha256()
    dtype = None
    for name, tensor in visual.state_dict().items():
        tensor = tensor.detach().to("cpu").contiguous().reshape(-1)
        dtype = dtype or str(tensor.dtype).replace("torch.", "")
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return {"backbone": backbone_name, "visual_weights_sha256": digest.hexdigest(),
            "dtype": dtype, "device": torch.device(device).type}


def describe_transform(transform):
    """A text that changes whenever the transform's settings change.

    torchvision transforms print all their settings; objects without their own `__repr__`
    (which would print a memory address, a new one in every process) print their fields.
    """
    if transform is None:
        return "None"
    if hasattr(transform, "transforms"):  # Compose / RandomApply / ...
        inner = ", ".join(describe_transform(t) for t in transform.transforms)
        extra = {k: v for k, v in vars(transform).items() if k != "transforms"}
        return f"{type(transform).__name__}([{inner}]{', ' + repr(sorted(extra.items())) if extra else ''})"
    if type(transform).__repr__ is object.__repr__:
        fields = sorted((k, repr(v)) for k, v in vars(transform).items())
        return f"{type(transform).__module__}.{type(transform).__qualname__}({fields})"
    return repr(transform)


def view_seed(image_digest, view, run_seed=None):
    """The RNG seed of view `view` of the image whose content sha256 is `image_digest`: the same
    in every run, or (with `run_seed`) drawn anew for each run seed."""
    text = f"{image_digest}/view{view}" if run_seed is None else f"{image_digest}/seed{run_seed}/view{view}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _statkey(st):
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def image_digests(paths, root):
    """Content sha256 of every file in `paths` (a missing file is an error naming it).

    Digests are memoised per list of paths under `root/file-digests/`, keyed by each file's
    stat (size, mtime, ctime, inode), so a cache hit does not re-read a whole dataset.
    """
    paths = [os.path.abspath(p) for p in paths]
    memo_path = os.path.join(root, DIGEST_DIR, key(sorted(set(paths))) + ".json")
    try:
        with open(memo_path) as f:
            memo = json.load(f)
    except (OSError, ValueError):
        memo = {}
    fresh, digests = {}, []
    for path in tqdm(paths, desc="Fingerprinting images", disable=len(paths) < 2000, leave=False):
        try:
            st = os.stat(path)
        except OSError as err:
            raise UnreadableImage(path, err) from err
        entry = memo.get(path)
        if entry is not None and entry[:-1] == _statkey(st):
            digest = entry[-1]
        else:
            try:
                digest = file_sha256(path)
            except OSError as err:
                raise UnreadableImage(path, err) from err
            settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > DIGEST_TRUST_AGE_S * 1e9
            if settled and _statkey(os.stat(path)) == _statkey(st):
                fresh[path] = _statkey(st) + [digest]
        digests.append(digest)
    if fresh:
        memo.update(fresh)
        make_dirs(os.path.dirname(memo_path))
        with atomic_write(memo_path, "w") as f:
            json.dump(memo, f)
    return digests
