"""Decoded-image store: each training image is decoded once per run (or once for all runs),
not once per epoch.

What is stored is exactly what `read_image` returns (the decoded pixels after
`.convert("RGB")`, before any random transform), as an H x W x 3 uint8 array; `image(i)`
turns it back into a PIL RGB image with the same pixels, so every transform gives the same
tensor as on the freshly decoded file.

Modes (`DATALOADER.IMAGE_STORE.MODE`):
- memory: decode every image once when training starts and keep the arrays in RAM (forked
  loader workers share them). Nothing is written.
- disk: one pack file per set of images under the store root (`DATALOADER.IMAGE_STORE.ROOT`,
  else $FEWSHOT_IMAGE_STORE, else ~/.cache/fewshot-clip/images), memory-mapped, shared by
  every run that trains on the same images (methods of one seed and shot count).
- auto (default): memory when the decoded images fit in `MEMORY_MB`, else disk.
- off: decode from the file at every access (the reference's behaviour).

A pack is named by the sha256 of its image files' contents, so a changed file means another
pack (rebuilt). Its header records the decoder (Pillow and codec library versions): a pack
written by another decoder is decoded again, with one line saying so. Packs are written to a
temp file and renamed (readers never see half a file), carry CRC32 checksums of header and
every image (a damaged pack is deleted and rebuilt), follow the umask like the other caches
(group-readable in a shared folder), and processes that need the same pack take turns through
a lock file, so the second finds the first one's pack. A full disk leaves no partial file:
the run says so once and reads its images from the files instead (same numbers).
"""
import hashlib
import json
import os
import struct
import zlib

import numpy as np
from filelock import FileLock
from PIL import Image

from dassl.utils.errors import OutputDirError, UserError
from dassl.utils.tools import atomic_write, current_umask, file_sha256

STORE_ENV = "FEWSHOT_IMAGE_STORE"
DEFAULT_ROOT = os.path.join("~", ".cache", "fewshot-clip", "images")
MODES = ("auto", "memory", "disk", "off")
FORMAT_VERSION = 1
MAGIC = b"FEWSHOT-PIXELS1\n"
END_MAGIC = b"FEWSHOT-PIXEND1\n"
ALIGN = 64
SUFFIX = ".pixels"
# Codec libraries whose version can change decoded pixels (libjpeg-turbo's IDCT above all).
CODECS = ("jpg", "jpg_2000", "zlib", "libtiff", "webp")


class DamagedPack(Exception):
    """A pack file that cannot be trusted (truncated, corrupted, not a pack)."""


class UnreadableImage(OSError):
    """An image file that is missing or cannot be decoded; `path` names it."""

    def __init__(self, path, reason):
        super().__init__(f'Cannot read image "{path}": {reason}. Re-download or remove this file '
                         "(and its entry in the split file).")
        self.path, self.reason = path, reason


def read_image(path):
    """Open an image as RGB; a missing or corrupt file raises an error naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:
        raise UnreadableImage(path, e) from e


def decoder_description():
    """The software that turns image files into pixels here (stored in every pack)."""
    import PIL
    from PIL import features
    desc = {"pillow": PIL.__version__, "convert": "RGB"}
    for codec in CODECS:
        try:
            desc[codec] = features.version(codec)
        except Exception:  # a codec Pillow was built without
            desc[codec] = None
    return desc


def store_root(configured=""):
    return os.path.abspath(os.path.expanduser(configured or os.environ.get(STORE_ENV) or DEFAULT_ROOT))


def _decoder_text(desc):
    return ", ".join(f"{k} {v}" for k, v in desc.items() if k != "convert" and v)


# ----------------------------------------------------------------------------- pack files
def write_pack(path, decoder, digests, arrays_iter, shapes):
    """Atomically write the images `arrays_iter` yields (H x W x 3 uint8, shapes known ahead)."""
    sizes = [h * w * 3 for h, w in shapes]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist() if sizes else []
    header = json.dumps({"format": FORMAT_VERSION, "decoder": decoder, "digests": digests,
                         "shapes": [list(s) for s in shapes], "offsets": offsets,
                         "payload_bytes": int(sum(sizes))}).encode()
    start = len(MAGIC) + 8 + len(header)
    pad = (-start) % ALIGN
    with atomic_write(path, "wb") as f:
        f.write(MAGIC + struct.pack("<Q", len(header) + pad) + header + b" " * pad)
        crcs = []
        for k, array in enumerate(arrays_iter):
            if array.shape != (shapes[k][0], shapes[k][1], 3) or array.dtype != np.uint8:
                raise ValueError(f"image {k} decoded to {array.shape} {array.dtype}, expected {shapes[k]}")
            data = np.ascontiguousarray(array).data
            crcs.append(zlib.crc32(data))
            f.write(data)
        trailer = json.dumps({"crc32": crcs, "header_crc32": zlib.crc32(header)}).encode()
        f.write(trailer + struct.pack("<Q", len(trailer)) + END_MAGIC)


def open_pack(path):
    """(header dict, [H x W x 3 uint8 views of one read-only memory map]) of a verified pack;
    `DamagedPack` when anything does not add up."""
    try:
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
    except (OSError, ValueError) as err:  # ValueError: an empty file cannot be mapped
        raise DamagedPack(f"cannot map ({err})") from err
    n = len(mapped)
    tail = len(END_MAGIC) + 8
    if n < len(MAGIC) + 8 + tail or bytes(mapped[:len(MAGIC)]) != MAGIC or bytes(mapped[n - len(END_MAGIC):]) != END_MAGIC:
        raise DamagedPack("missing start or end marker (truncated or not a pack)")
    (header_len,) = struct.unpack("<Q", bytes(mapped[len(MAGIC):len(MAGIC) + 8]))
    (trailer_len,) = struct.unpack("<Q", bytes(mapped[n - tail:n - len(END_MAGIC)]))
    payload_start = len(MAGIC) + 8 + header_len
    payload_end = n - tail - trailer_len
    if payload_end < payload_start:
        raise DamagedPack("lengths do not add up")
    raw_header = bytes(mapped[len(MAGIC) + 8:payload_start]).rstrip(b" ")
    try:
        header = json.loads(raw_header)
        trailer = json.loads(bytes(mapped[payload_end:n - tail]))
    except ValueError as err:
        raise DamagedPack(f"unreadable header ({err})") from err
    if trailer.get("header_crc32") != zlib.crc32(raw_header):
        raise DamagedPack("header checksum mismatch")
    if header.get("payload_bytes") != payload_end - payload_start or header.get("format") != FORMAT_VERSION:
        raise DamagedPack("payload size or format does not match the header")
    payload = mapped[payload_start:payload_end]
    views = []
    for (h, w), offset, crc in zip(header["shapes"], header["offsets"], trailer["crc32"]):
        view = payload[offset:offset + h * w * 3]
        if zlib.crc32(view) != crc:
            raise DamagedPack(f"checksum mismatch in image {len(views)}")
        views.append(view.reshape(h, w, 3))
    if len(views) != len(header["digests"]):
        raise DamagedPack("fewer checksums than images")
    return header, views


# ----------------------------------------------------------------------------- the store
class DecodedImages:
    """The decoded pixels of `paths` for one loader. `fill()` (main process, before the
    loader's workers start) decodes or maps them; `image(i)` returns item i as a PIL image.

    `describe(i)` names item i's entry in its split file for error messages.
    """

    def __init__(self, paths, mode="auto", root="", memory_mb=1024, describe=None):
        if mode not in MODES:
            raise UserError(f"DATALOADER.IMAGE_STORE.MODE is {mode!r}; use one of {', '.join(MODES)}")
        self.paths = list(paths)
        self.mode = mode
        self.root = store_root(root)
        self.memory_bytes = memory_mb * 2 ** 20
        self.describe = describe or (lambda i: "listed in the split file")
        self.arrays = None  # per item: array (memory) or memory-map view (disk); None: read files
        self.filled = mode == "off"
        self.used = "off" if mode == "off" else None

    def __len__(self):
        return len(self.paths)

    def image(self, i):
        if self.arrays is None:
            return read_image(self.paths[i])
        return Image.fromarray(np.asarray(self.arrays[i]))  # copies into Pillow's own buffer

    def _unreadable(self, i, err):
        reason = err.reason if isinstance(err, UnreadableImage) else err
        return UserError(f'Cannot read image "{self.paths[i]}" ({reason}); it is {self.describe(i)}. Restore '
                         f"the file, or remove that entry from the split file, then rerun.")

    def _decode(self, i):
        try:
            return np.asarray(read_image(self.paths[i]))
        except UnreadableImage as err:
            raise self._unreadable(i, err) from err

    def _shapes(self):
        shapes = []
        for i, path in enumerate(self.paths):
            try:
                with Image.open(path) as img:  # reads the header only
                    w, h = img.size
            except Exception as err:
                raise self._unreadable(i, err) from err
            shapes.append((h, w))
        return shapes

    def fill(self):
        """Decode (memory) or build/map the pack (disk); once per store."""
        if self.filled:
            return
        self.filled = True
        shapes = self._shapes()
        total = sum(h * w * 3 for h, w in shapes)
        mode = self.mode
        if mode == "auto":
            mode = "memory" if total <= self.memory_bytes else "disk"
        if mode == "memory":
            self.arrays = [self._decode(i) for i in range(len(self.paths))]
            self.used = "memory"
            print(f"Image store: {len(self.paths):,} training images decoded once, kept in memory "
                  f"({total / 2 ** 20:,.1f} MiB); DATALOADER.IMAGE_STORE.MODE chooses: {', '.join(MODES)}")
            return
        self.arrays = self._disk(shapes, total)
        self.used = "disk" if self.arrays is not None else "off"

    def _disk(self, shapes, total):
        decoder = decoder_description()
        try:
            digests = [file_sha256(p) for p in self.paths]
        except OSError as err:
            bad = next(i for i, p in enumerate(self.paths) if not os.access(p, os.R_OK))
            raise self._unreadable(bad, err) from err
        key = hashlib.sha256(json.dumps(digests).encode()).hexdigest()[:32]
        folder = os.path.join(self.root, "packs")
        path = os.path.join(folder, key + SUFFIX)
        try:
            os.makedirs(folder, exist_ok=True)
            lock = FileLock(path + ".lock", mode=0o666 & ~current_umask())
            with lock:  # a second process needing this pack waits here, then maps the first one's
                views = self._existing(path, decoder, digests)
                if views is None:
                    write_pack(path, decoder, digests, (self._decode(i) for i in range(len(self.paths))), shapes)
                    print(f"Image store: {len(self.paths):,} training images decoded once into {path} "
                          f"({total / 2 ** 20:,.1f} MiB, memory-mapped; shared by runs on the same images)")
                    _, views = open_pack(path)
                else:
                    print(f"Image store: {len(self.paths):,} decoded training images mapped from {path}")
            return views
        except (OutputDirError, OSError) as err:  # a full, read-only or over-quota store folder
            print(f"Image store: cannot write the decoded images ({err}). Training goes on decoding each "
                  f"image from its file at every epoch (same numbers, slower). Free space under {folder}, or "
                  f"point DATALOADER.IMAGE_STORE.ROOT / ${STORE_ENV} elsewhere, or set DATALOADER.IMAGE_STORE."
                  f"MODE memory.")
            return None
        except DamagedPack as err:  # only if a fresh pack does not read back
            raise OSError(f"Image store: the pack just written to {path} does not read back ({err}); "
                          f"check the disk, or set DATALOADER.IMAGE_STORE.MODE memory") from err

    @staticmethod
    def _existing(path, decoder, digests):
        """The verified views of the pack at `path`, or None (deleted first when damaged or
        written by another decoder, with a line saying so)."""
        if not os.path.exists(path):
            return None
        try:
            header, views = open_pack(path)
        except DamagedPack as err:
            print(f"Image store: {path} is damaged ({err}); decoding its images again")
            os.remove(path)
            return None
        if header["digests"] != digests:
            print(f"Image store: {path} holds other images (a name collision); decoding again")
            os.remove(path)
            return None
        if header["decoder"] != decoder:
            print(f"Image store: {path} was decoded by {_decoder_text(header['decoder'])}; this machine decodes "
                  f"with {_decoder_text(decoder)}, whose pixels may differ: decoding its images again")
            del views
            os.remove(path)
            return None
        return views
