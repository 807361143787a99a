"""Small storage primitives for on-disk tensor caches (the feature cache, a decoded-image store):
checksummed safetensors files written atomically, and a lock file that processes building the
same entries take turns through (filelock).

A file is a safetensors file whose string metadata holds the caller's JSON-able `meta` and one
sha256 over that metadata and every tensor's bytes: safetensors itself rejects a truncated file
or a broken header, the checksum catches a flipped byte anywhere else. Files are written to a
temp file and renamed (readers never see half a file) with the umask's mode, so a group-shared
cache stays readable by the group.
"""
import contextlib
import hashlib
import json
import os

import filelock
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from dassl.utils.tools import atomic_write

SUFFIX = ".safetensors"
META_KEY, SHA_KEY = "meta", "sha256"


class DamagedFile(Exception):
    """A tensor file that cannot be trusted (truncated, corrupted, not a tensor file)."""


def _checksum(meta_text, tensors):
    digest = hashlib.sha256(meta_text.encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def write_tensors(path, tensors, meta):
    """Atomically write {name: CPU tensor} with the JSON-able `meta`."""
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    meta_text = json.dumps(meta, sort_keys=True)
    data = save_bytes(tensors, {META_KEY: meta_text, SHA_KEY: _checksum(meta_text, tensors)})
    with atomic_write(path, "wb") as f:
        f.write(data)


def read_meta(path):
    """The `meta` of a tensor file (its header only); DamagedFile when unreadable."""
    try:
        with safe_open(path, "pt") as f:
            header = f.metadata() or {}
        return json.loads(header[META_KEY])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise DamagedFile(f"{path}: not a readable tensor file ({err})") from err


def read_tensors(path):
    """({name: tensor}, meta) of a tensor file, checked against its checksum."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        tensors = load_bytes(data)  # rejects a truncated file or a broken header
        header_size = int.from_bytes(data[:8], "little")  # the safetensors layout
        header = json.loads(data[8:8 + header_size])["__metadata__"]
        meta_text, expected = header[META_KEY], header[SHA_KEY]
    except (SafetensorError, ValueError, KeyError, TypeError) as err:
        raise DamagedFile(f"{path}: not a readable tensor file ({err})") from err
    if _checksum(meta_text, tensors) != expected:
        raise DamagedFile(f"{path}: checksum mismatch (corrupted)")
    return tensors, json.loads(meta_text)


@contextlib.contextmanager
def exclusive(lock_path, waiting_message):
    """Hold the lock file `lock_path`, printing `waiting_message` when another process has it;
    the file is removed afterwards (a late comer may then lock a new one: at worst duplicate
    work, never a wrong file)."""
    lock = filelock.FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        print(waiting_message)
        lock.acquire()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock_path)
        lock.release()
