"""Cache of frozen image-encoder features, so a method that trains only a small head on top
of a frozen CLIP does not encode the same images again in every run.

Pipelines (`TRAIN.FEATURE_CACHE.PIPELINE`, see `resolve_pipeline`):
- exact-cached-eval (default): test/val features are cached. The test transform is
  deterministic, and each image is encoded inside the same batch the test loader yields it in
  (the encoder's float output depends on the batch), so a cached feature is bit for bit what
  the encoder computes at test time; every run, method, shot count and seed with the same
  split and test batch size shares it. Training images go through the encoder at every step.
- fast: training features are cached as well, V views per image, view v drawn with the
  training transform from the seed `view_seed(image digest, v, run seed)` (VIEWS_PER_SEED
  True, the default: each seed draws its own views; False: every run that uses the image sees
  the same views); each epoch reads a random view of each image (VIEW_ORDER random, the
  default) or view `e % V` (cycle). Faster; its accuracy matches the reference on average
  (README "Performance"), not run for run.
- reference (or TRAIN.FEATURE_CACHE.ENABLED False): nothing cached.
Building the cache never moves the run's random streams (`preserved_rng`): a run that fills
the cache and a run that finds it filled train identically.

On-disk layout under the cache root (`TRAIN.FEATURE_CACHE.ROOT`, else $FEWSHOT_FEATURE_CACHE,
else ~/.cache/fewshot-clip/features):

    <root>/<encoder key>/<feature-set key>/shard-*.feat   features of some rows
    <root>/file-digests/<list key>.json                   memo: file stat -> content sha256

Everything that changes the numbers is in the keys: backbone name, sha256 of the visual
weights, encoder dtype and device type (encoder key); the transform's full description,
the row scheme and V (feature-set key); the image bytes (per row). Each shard carries that
description in its header and checksums of header and payload: a shard that does not match
is not used, a damaged one (truncated, corrupted) is deleted and its images are encoded again.
Shards are written to a temp file and renamed (readers never see half a file); processes
that need the same missing rows take turns through a lock file, so the second one finds
the first one's shard instead of encoding the same images again.

One more difference of the fast pipeline: CoOp with PREC amp encodes training images under
autocast (fp16) in the reference; cached training views come from the encoder without it.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import random
import struct
import time
import uuid

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler
from tqdm import tqdm

from dassl.data.data_manager import UnreadableImage, read_image
from dassl.data.samplers import build_sampler
from dassl.utils.errors import UserError
from dassl.utils.tools import atomic_write, file_sha256

CACHE_ENV = "FEWSHOT_FEATURE_CACHE"
DEFAULT_ROOT = os.path.join("~", ".cache", "fewshot-clip", "features")
FORMAT_VERSION = 1  # bump when the shard layout or the view seeding changes
MAGIC = b"FEWSHOT-FEATURES\n"
SHARD_SUFFIX = ".feat"
DIGEST_DIR = "file-digests"
# A file's digest is memoised under its stat only when the file has not changed for this
# long: a later write then necessarily moves its ctime, even on coarse-clock file systems.
DIGEST_TRUST_AGE_S = 2.0
_DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


class DamagedShard(Exception):
    """A shard file that cannot be trusted (truncated, corrupted, not a shard)."""


def cache_root(configured=""):
    """The cache root: the config value, else $FEWSHOT_FEATURE_CACHE, else the default."""
    return os.path.abspath(os.path.expanduser(configured or os.environ.get(CACHE_ENV) or DEFAULT_ROOT))


def _sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def _make_dirs(path):
    """Create a cache folder, or say which setting points at an unusable place."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise OSError(f"Feature cache: cannot create {path} ({err}). Point TRAIN.FEATURE_CACHE.ROOT or "
                      f"${CACHE_ENV} at a writable folder, or set TRAIN.FEATURE_CACHE.ENABLED False.") from err


def _key(description):
    """Short folder name for a JSON-able description (the full description is in each shard)."""
    return _sha256_hex(json.dumps(description, sort_keys=True).encode())[:24]


# ----------------------------------------------------------------------------- fingerprints
def encoder_fingerprint(visual, backbone_name, device, extra=None):
    """What identifies an image encoder's numbers: name, weights, dtype, device type (and
    `extra`: for open_clip backbones the library and the model's preprocessing, so caches of
    different backbones or preprocessing never mix; absent for `clip` models, whose keys stay
    those of earlier caches).

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
            "dtype": dtype, "device": torch.device(device).type, **(extra or {})}


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


def _stat_key(st):
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def image_digests(paths, root):
    """Content sha256 of every file in `paths` (a missing file is an error naming it).

    Digests are memoised per list of paths under `root/file-digests/`, keyed by each file's
    stat (size, mtime, ctime, inode), so a cache hit does not re-read a whole dataset.
    """
    paths = [os.path.abspath(p) for p in paths]
    memo_path = os.path.join(root, DIGEST_DIR, _key(sorted(set(paths))) + ".json")
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
        if entry is not None and entry[:-1] == _stat_key(st):
            digest = entry[-1]
        else:
            try:
                digest = file_sha256(path)
            except OSError as err:
                raise UnreadableImage(path, err) from err
            settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > DIGEST_TRUST_AGE_S * 1e9
            if settled and _stat_key(os.stat(path)) == _stat_key(st):
                fresh[path] = _stat_key(st) + [digest]
        digests.append(digest)
    if fresh:
        memo.update(fresh)
        _make_dirs(os.path.dirname(memo_path))
        with atomic_write(memo_path, "w") as f:
            json.dump(memo, f)
    return digests


# ----------------------------------------------------------------------------- shard files
def write_shard(path, description, digests, features):
    """Atomically write `features` [N, V, D] for the images `digests` (header + raw payload).

    Layout: MAGIC, u64 header length, sha256(header) (32 bytes), header JSON, payload.
    """
    features = features.detach().to("cpu").contiguous()
    dtype = str(features.dtype).replace("torch.", "")
    if dtype not in _DTYPES:
        raise TypeError(f"feature cache stores {list(_DTYPES)} features, got {features.dtype}")
    payload = features.reshape(-1).view(torch.uint8).numpy().tobytes()
    header = json.dumps({"format": FORMAT_VERSION, "description": description, "digests": list(digests),
                         "dtype": dtype, "shape": list(features.shape),
                         "payload_sha256": _sha256_hex(payload)}).encode()
    with atomic_write(path, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(header)) + hashlib.sha256(header).digest() + header)
        f.write(payload)


def _read_exact(f, n, path, what):
    data = f.read(n)
    if len(data) != n:
        raise DamagedShard(f"{path}: truncated in the {what} ({len(data)} of {n} bytes)")
    return data


def read_shard_header(path):
    """The header dict of a shard, plus `payload_offset`; DamagedShard if it is not intact."""
    with open(path, "rb") as f:
        if _read_exact(f, len(MAGIC), path, "magic") != MAGIC:
            raise DamagedShard(f"{path}: not a feature shard (wrong magic bytes)")
        (length,) = struct.unpack("<Q", _read_exact(f, 8, path, "header length"))
        if length > os.path.getsize(path):
            raise DamagedShard(f"{path}: header length {length} exceeds the file size")
        checksum = _read_exact(f, 32, path, "header checksum")
        header = _read_exact(f, length, path, "header")
    if hashlib.sha256(header).digest() != checksum:
        raise DamagedShard(f"{path}: header checksum mismatch (corrupted)")
    header = json.loads(header)
    if header.get("format") != FORMAT_VERSION or header.get("dtype") not in _DTYPES:
        raise DamagedShard(f"{path}: unsupported shard format {header.get('format')} / dtype {header.get('dtype')}")
    header["payload_offset"] = len(MAGIC) + 8 + 32 + length
    return header


def read_shard_features(path, header):
    """The [N, V, D] features of a shard whose header was read; checks size and checksum."""
    dtype = _DTYPES[header["dtype"]]
    count = 1
    for n in header["shape"]:
        count *= n
    size = count * torch.empty((), dtype=dtype).element_size()
    payload = bytearray(size)  # read in place: a large shard is not held twice in memory
    with open(path, "rb") as f:
        f.seek(header["payload_offset"])
        got = f.readinto(payload)
        extra = len(f.read(1))
    if got != size or extra:
        raise DamagedShard(f"{path}: payload is {'longer' if extra else f'{got} bytes'}, expected {size} bytes "
                           f"(truncated or extended)")
    if _sha256_hex(payload) != header["payload_sha256"]:
        raise DamagedShard(f"{path}: payload checksum mismatch (corrupted)")
    if size == 0:
        return torch.empty(header["shape"], dtype=dtype)
    return torch.frombuffer(payload, dtype=dtype).reshape(header["shape"])


# ----------------------------------------------------------------------------- random state
@contextlib.contextmanager
def preserved_rng():
    """Run a block without moving any random stream a training run draws from (torch on the
    CPU and every CUDA device, Python's `random`, NumPy): a run that builds the cache then
    trains exactly like a run that finds it built."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


# ----------------------------------------------------------------------------- encoding views
class _SeededViews(Dataset):
    """Item k = view k % V of image k // V, transformed under that view's own seed."""

    def __init__(self, paths, digests, transform, views, run_seed=None):
        self.paths, self.digests, self.transform, self.views = paths, digests, transform, views
        self.run_seed = run_seed

    def __len__(self):
        return len(self.paths) * self.views

    def __getitem__(self, k):
        i, v = divmod(k, self.views)
        image = read_image(self.paths[i])
        with torch.random.fork_rng(devices=[]):  # the run's own random stream is left untouched
            torch.manual_seed(view_seed(self.digests[i], v, self.run_seed))
            return self.transform(image)


def _progress(loader, desc):
    """Per-batch progress while encoding (a bar that moves, not 0/1 for the whole set)."""
    return tqdm(loader, desc=desc, unit="batch", mininterval=1.0)


class FeatureSet:
    """Features of one encoder under one transform with V views per row, on disk.

    A row is keyed by a string: an image's content digest (training views), or an image's
    place in one batch of the reference test loader (exact test/val features, see
    `load_reference_batches`). `rows` names the scheme and is part of the key.
    """

    def __init__(self, root, encoder, transform, views, rows="image", transform_text=None, run_seed=None):
        if views < 1:
            raise UserError(f"TRAIN.FEATURE_CACHE.VIEWS = {views}; needs at least 1 view per image")
        if transform is None and transform_text is None:
            raise UserError("The fast pipeline needs an image transform (INPUT.NO_TRANSFORM is True); set "
                            "TRAIN.FEATURE_CACHE.PIPELINE exact-cached-eval or reference")
        self.root = root
        self.transform, self.views, self.run_seed = transform, views, run_seed
        self.description = {"format": FORMAT_VERSION, "encoder": encoder, "rows": rows,
                            "transform": transform_text or describe_transform(transform), "views": views}
        if run_seed is not None:  # views drawn for one run seed: a set of their own
            self.description["view_seed"] = run_seed
        self.directory = os.path.join(root, _key(encoder), _key(self.description))

    def _shards(self):
        if not os.path.isdir(self.directory):
            return []
        return sorted(os.path.join(self.directory, n) for n in os.listdir(self.directory)
                      if n.startswith("shard-") and n.endswith(SHARD_SUFFIX))

    def _discard(self, path, err):
        print(f"Feature cache: {err}; deleting it, its images will be encoded again")
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)

    def collect(self, wanted):
        """{key: [V, D] features} for the wanted row keys found in intact, matching shards."""
        wanted, found = set(wanted), {}
        for path in self._shards():
            try:
                header = read_shard_header(path)
            except (DamagedShard, ValueError) as err:
                self._discard(path, err)
                continue
            if header["description"] != self.description:
                print(f"Feature cache: {path} was written for other settings; not used")
                continue
            rows = [(i, d) for i, d in enumerate(header["digests"]) if d in wanted and d not in found]
            if not rows:
                continue
            try:
                features = read_shard_features(path, header)
            except DamagedShard as err:
                self._discard(path, err)
                continue
            for i, d in rows:
                found[d] = features[i]
        return found

    @contextlib.contextmanager
    def _lock(self, keys):
        """Exclusive lock for building this set of rows (waits for another builder)."""
        _make_dirs(self.directory)
        path = os.path.join(self.directory, f".lock-{_key(sorted(keys))}")
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"Feature cache: another process is encoding these images; waiting for it ({path})")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                # Removing the file may let a late comer lock a new one: at worst duplicate work.
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _rows(self, keys, encode_missing):
        """{key: [V, D]} for every key; `encode_missing(keys)` computes [n, V, D] for the keys
        not cached yet (in their order), which are then stored as one new shard. Runs without
        touching the caller's random state. Returns (features, number of keys encoded)."""
        with preserved_rng():
            found = self.collect(keys)
            missing = [k for k in keys if k not in found]
            if not missing:
                return found, 0
            with self._lock(missing):
                found.update(self.collect(missing))  # another process may have built them meanwhile
                missing = [k for k in keys if k not in found]
                if missing:
                    new = encode_missing(missing)
                    name = f"shard-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}{SHARD_SUFFIX}"
                    write_shard(os.path.join(self.directory, name), self.description, missing, new)
                    found.update(zip(missing, new))
            return found, len(missing)

    @torch.no_grad()
    def load(self, paths, encode, batch_size=100, num_workers=0, desc="features"):
        """[N, V, D] seeded views of the images `paths`, encoding only those not cached yet.

        `encode(images)` maps a batch of transformed images to features (the trainer's own
        encoder call, so its forward counter sees the cache being built).
        """
        if not paths:
            raise ValueError(f"No {desc} images to encode: the split is empty")
        digests = image_digests(paths, self.root)
        path_of = dict(zip(digests, (os.path.abspath(p) for p in paths)))

        def encode_missing(missing):
            print(f"Feature cache: encoding {len(missing)} of {len(path_of)} {desc} images x "
                  f"{self.views} view(s) into {self.directory}")
            views = _SeededViews([path_of[d] for d in missing], missing, self.transform, self.views, self.run_seed)
            loader = DataLoader(views, batch_size=batch_size, num_workers=num_workers, shuffle=False,
                                generator=torch.Generator())
            chunks = [encode(images).detach().to("cpu") for images in _progress(loader, f"Caching {desc} views")]
            features = torch.cat(chunks)
            return features.reshape(len(missing), self.views, *features.shape[1:])

        found, encoded = self._rows(list(path_of), encode_missing)
        if not encoded:
            print(f"Feature cache: all {len(path_of)} {desc} images found in {self.directory}")
        return torch.stack([found[d] for d in digests])

    @torch.no_grad()
    def load_reference_batches(self, reference, encode, desc):
        """[N, 1, D] features of the images of `reference` (a sequential image loader), each
        encoded inside the very batch that loader yields it in.

        The encoder's output for an image depends (in the last float bits) on the other images
        of its batch, so each row is keyed by its batch's image digests and its place in it:
        every run with the same split and test batch size shares the rows, and each row equals
        what the encoder computes at test time, bit for bit.
        """
        items = reference.dataset.data_source
        digests = image_digests([item.impath for item in items], self.root)
        batches = [list(batch) for batch in reference.batch_sampler]
        keys = []
        for batch in batches:
            batch_key = _sha256_hex("|".join(digests[i] for i in batch).encode())
            keys.append([f"{batch_key}/{place}" for place in range(len(batch))])

        def encode_missing(missing):
            wanted = set(missing)
            todo = [b for b, batch_keys in enumerate(keys) if any(k in wanted for k in batch_keys)]
            print(f"Feature cache: encoding {sum(len(batches[b]) for b in todo)} of {len(items)} {desc} "
                  f"images in {len(todo)} batch(es) of the {desc} loader into {self.directory}")
            loader = DataLoader(reference.dataset, batch_sampler=[batches[b] for b in todo],
                                num_workers=reference.num_workers, collate_fn=reference.collate_fn,
                                generator=torch.Generator())
            chunks = {}
            for b, batch in zip(todo, _progress(loader, f"Caching {desc} features")):
                chunks.update(zip(keys[b], encode(batch["img"]).detach().to("cpu")))
            return torch.stack([chunks[k] for k in missing]).unsqueeze(1)

        flat = [k for batch_keys in keys for k in batch_keys]
        found, encoded = self._rows(list(dict.fromkeys(flat)), encode_missing)
        if not encoded:
            print(f"Feature cache: all {len(items)} {desc} images found in {self.directory}")
        return torch.stack([found[k] for k in flat])


# ----------------------------------------------------------------------------- loaders
def random_views(n_items, views, seed, epoch):
    """View index of each of `n_items` training items in `epoch` for VIEW_ORDER random: drawn
    uniformly from the V views by a generator of its own (seeded by run seed and epoch), so
    the run's random streams do not move."""
    key = int.from_bytes(hashlib.sha256(f"views/{seed}/{epoch}".encode()).digest()[:8], "little") >> 1
    return torch.randint(views, (n_items,), generator=torch.Generator().manual_seed(key))


class CachedFeatureBatches(Dataset):
    """Cached features as Dassl batch dicts (img = features); indexed by a whole batch of
    indices at once. `view` picks the view of the current epoch: one index for every item,
    or a LongTensor with one index per item."""

    def __init__(self, features, items):
        self.features = features
        self.labels = torch.tensor([item.label for item in items])
        self.domains = torch.tensor([item.domain for item in items])
        self.impaths = [item.impath for item in items]
        self.view = 0

    def __len__(self):
        return len(self.impaths)

    def __getitem__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.long)
        view = self.view if isinstance(self.view, int) else self.view[index]
        return {"img": self.features[index, view], "label": self.labels[index],
                "domain": self.domains[index], "impath": [self.impaths[i] for i in indices], "index": index}


def loader_like(reference, features, items):
    """A loader over cached features with the reference loader's sampler type, batch size
    and drop_last (one batch of features per step, as the reference yields images)."""
    dataset = CachedFeatureBatches(features, items)
    sampler = build_sampler(type(reference.sampler).__name__, data_source=dataset)
    batches = BatchSampler(sampler, batch_size=reference.batch_size, drop_last=reference.drop_last)
    return DataLoader(dataset, batch_size=None, sampler=batches, num_workers=0)


# ----------------------------------------------------------------------------- trainer glue
# What a run computes with, in increasing speed:
# - "reference": every image through the encoder whenever a loader yields it; nothing cached.
# - "exact-cached-eval": test/val features cached (encoded in the test loader's own batches, so
#   identical); training images through the encoder at every step with fresh augmentations.
# - "fast": also training features, V augmented views per image; not the reference's numbers.
PIPELINES = ("reference", "exact-cached-eval", "fast")
# fast: which view an epoch reads. cycle: view e % V for every image (every image's views in
# lockstep, the same sequence in every seed); random: per image and epoch, uniform over V.
VIEW_ORDERS = ("cycle", "random")
DEFAULT_PIPELINE = "exact-cached-eval"


def resolve_pipeline(cfg):
    """{"name": one of PIPELINES, "views": V for "fast", else None} (plus "view_order" for
    "fast") from the config, or a UserError naming the key to fix."""
    node = cfg.TRAIN.FEATURE_CACHE
    name = node.PIPELINE
    if name not in PIPELINES:
        raise UserError(f"TRAIN.FEATURE_CACHE.PIPELINE = {name!r}; use one of {', '.join(PIPELINES)}")
    if not node.ENABLED:
        if name == "fast":
            raise UserError("TRAIN.FEATURE_CACHE.ENABLED False turns the cache off, but TRAIN.FEATURE_CACHE."
                            "PIPELINE fast needs it; set PIPELINE reference (or ENABLED True)")
        name = "reference"
    views = None
    if name == "fast":
        if node.VIEWS < 1:
            raise UserError(f"TRAIN.FEATURE_CACHE.VIEWS = {node.VIEWS}; use at least 1 "
                            f"(or TRAIN.FEATURE_CACHE.PIPELINE exact-cached-eval for fresh augmentations)")
        if node.VIEW_ORDER not in VIEW_ORDERS:
            raise UserError(f"TRAIN.FEATURE_CACHE.VIEW_ORDER = {node.VIEW_ORDER!r}; "
                            f"use one of {', '.join(VIEW_ORDERS)}")
        views = node.VIEWS
        if node.VIEW_ORDER == "cycle":
            views = min(views, max(cfg.OPTIM.MAX_EPOCH, 1))  # more views than epochs are never read
        return {"name": name, "views": views, "view_order": node.VIEW_ORDER,
                "views_per_seed": bool(node.VIEWS_PER_SEED)}
    return {"name": name, "views": views}


def _split_file(dataset):
    """The file that lists the dataset's images (its path when it is one file), for messages."""
    source = dataset.split_source() if hasattr(dataset, "split_source") else "the split file"
    path = os.path.join(getattr(dataset, "dataset_dir", ""), source)
    return path if os.path.isfile(path) else source


def _uncacheable_reason(loader):
    """Why `loader`'s batches cannot be replayed exactly from the cache, or None."""
    if not isinstance(loader.sampler, SequentialSampler):
        return f"its sampler is {type(loader.sampler).__name__}, not SequentialSampler"
    dataset = loader.dataset
    if not hasattr(dataset, "data_source"):
        return f"its dataset {type(dataset).__name__} has no data_source"
    if isinstance(getattr(dataset, "transform", None), (list, tuple)):
        return "it applies several transforms per image"
    return None


def _loader_transform_text(loader):
    """The settings that turn a file into the image tensor of `loader` (wrapper and transform)."""
    dataset = loader.dataset
    transform = dataset.transform if dataset.transform is not None else getattr(dataset, "to_tensor", None)
    return f"{type(dataset).__module__}.{type(dataset).__qualname__}: {describe_transform(transform)}"


class TrainerFeatureCache:
    """The cache as a frozen-CLIP trainer uses it: image loaders are replaced by loaders over
    cached features with the same batches, computed with the trainer's own encoder call
    (`trainer.image_features`), so they are what it would compute."""

    def __init__(self, trainer, pipeline):
        cfg = trainer.cfg
        self.pipeline = pipeline
        self.views = pipeline["views"]
        self.root = cache_root(cfg.TRAIN.FEATURE_CACHE.ROOT)
        backbone = trainer.clip_model
        extra = None
        if backbone.library != "clip":
            extra = {"library": backbone.library, "preprocess": [*backbone.preprocess, backbone.resize_mode]}
        self.encoder = encoder_fingerprint(backbone.visual, cfg.MODEL.BACKBONE.NAME, trainer.device, extra)
        self.train_set = None
        if pipeline["name"] == "fast":
            run_seed = cfg.SEED if pipeline["views_per_seed"] else None
            self.train_set = FeatureSet(self.root, self.encoder, trainer.dm.tfm_train, views=self.views,
                                        run_seed=run_seed)
        self._encode = lambda images: trainer.image_features(images.to(trainer.device))
        self._dataset = trainer.dm.dataset
        self._batch_size = cfg.DATALOADER.TEST.BATCH_SIZE
        self._workers = cfg.DATALOADER.NUM_WORKERS
        if pipeline["name"] == "fast":
            order = (f"epoch e reads view e % {self.views}" if pipeline["view_order"] == "cycle" else
                     "each epoch reads a random view of each image")
            drawn = "drawn for this seed" if pipeline["views_per_seed"] else "the same in every seed"
            training = (f"training on {self.views} cached augmented view(s) per image ({drawn}), {order} "
                        f"(faster; not the reference's numbers)")
        else:
            training = "training images through the image encoder at every step with fresh augmentations"
        print(f"Pipeline {pipeline['name']}: test/val features cached under {self.root} (encoded in the "
              f"test loader's own batches: identical to encoding them at test time); {training}. "
              f"TRAIN.FEATURE_CACHE.PIPELINE chooses: {', '.join(PIPELINES)}")

    @contextlib.contextmanager
    def _naming_the_split_file(self):
        """An image the cache cannot read becomes one message naming it and the file listing it."""
        try:
            yield
        except UnreadableImage as err:
            raise UserError(f"Feature cache: cannot read image {err.path} ({err.reason}); it is listed in "
                            f"{_split_file(self._dataset)}. Restore the file, or remove its entry from that "
                            f"file.") from err

    def eval_loader(self, reference, split):
        """Loader of exact cached features in place of the `split` image loader (or the image
        loader itself, with a line saying why, when its batches cannot be replayed)."""
        reason = _uncacheable_reason(reference)
        if reason is not None:
            print(f"Feature cache: {split} images not cached ({reason}); they go through the encoder")
            return reference
        feature_set = FeatureSet(self.root, self.encoder, None, views=1, rows="reference-batches",
                                 transform_text=_loader_transform_text(reference))
        with self._naming_the_split_file():
            features = feature_set.load_reference_batches(reference, self._encode, split)
        return loader_like(reference, features, reference.dataset.data_source)

    def train_loader(self, reference):
        """Loader of cached training views in place of the training image loader ("fast")."""
        items = reference.dataset.data_source
        with self._naming_the_split_file():
            features = self.train_set.load([item.impath for item in items], self._encode, self._batch_size,
                                           self._workers, desc="train")
        return loader_like(reference, features, items)
