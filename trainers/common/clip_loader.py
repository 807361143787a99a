"""Load the CLIP model a config names, from a local file, the cache or the official URL.

Public names (other trainers import these):
- `load_clip_to_cpu(cfg)`: `clip.model.CLIP` on CPU, fp16 weights, eval mode, exactly as
  `clip.model.build_model` returns it.
- `build_random_clip(name, seed=0)`: the named architecture with random (seeded) weights.
- `CLIP_ARCHITECTURES`: constructor arguments of every official CLIP architecture.
- `resolve_weights_file(name, path="")`: the local file that holds the weights.
- `check_input_size(cfg, clip_model)`: INPUT.SIZE must be the resolution CLIP was built for.
- `trainers.common.precision.effective_precision(requested, device, key)`: fp16/amp -> fp32
  on CPU, printing one line.

Where the weights come from, in order:
1. `MODEL.BACKBONE.PATH` when set (a TorchScript archive or a plain state dict);
2. the cache `$CLIP_CACHE_DIR` (default `~/.cache/clip`), file name as in the official URL,
   checked against the sha256 the URL carries;
3. a download into that cache (sha256-checked), unless `CLIP_OFFLINE=1`.
`MODEL.BACKBONE.NAME tiny-pretrained` (ResNet) and `tiny-vit-pretrained` (ViT) are the small CLIPs
pretrained on this machine (`trainers.common.tiny_pretrained`): read from the cache, pretrained
there first if missing.
With `MODEL.BACKBONE.PRETRAINED False` no file is read: the architecture gets random weights.
"""
import os
import urllib.error
import urllib.request
import warnings

import torch
from clip.clip import _MODELS
from clip.model import CLIP, build_model, convert_weights
from tqdm import tqdm

from dassl.config.merge import ConfigError
from dassl.utils import file_sha256
from dassl.utils.errors import CheckpointError

# CLIP_ARCHITECTURES and TOY_ARCHITECTURES stay importable from here.
from .architectures import (CLIP_ARCHITECTURES, TINY_PRETRAINED_ARCHITECTURE,  # noqa: F401
                            TINY_VIT_PRETRAINED_ARCHITECTURE, TOY_ARCHITECTURES)

TINY_PRETRAINED = "tiny-pretrained"  # trainers.common.tiny_pretrained.NAME, imported only when used
TINY_VIT_PRETRAINED = "tiny-vit-pretrained"  # trainers.common.tiny_pretrained.VIT_NAME
TINY_ARCHITECTURE_OF = {TINY_PRETRAINED: TINY_PRETRAINED_ARCHITECTURE,
                        TINY_VIT_PRETRAINED: TINY_VIT_PRETRAINED_ARCHITECTURE}

CACHE_ENV = "CLIP_CACHE_DIR"
OFFLINE_ENV = "CLIP_OFFLINE"
DOWNLOAD_TIMEOUT_S = 30


class WeightsFileError(CheckpointError, ValueError):
    """A CLIP weights file that cannot be read or holds another architecture."""


class WeightsUnavailable(CheckpointError, RuntimeError):
    """The weights are neither on disk nor downloadable; the message says where to put them."""


class WeightsPathMissing(CheckpointError, FileNotFoundError):
    """MODEL.BACKBONE.PATH names no file."""


def weights_description(cfg):
    """What the run's CLIP weights are, as result.json, tables and plots name them."""
    backbone = cfg.MODEL.BACKBONE
    if not backbone.PRETRAINED:
        return "random"
    if backbone.PATH:
        return backbone.PATH
    if backbone.NAME in TINY_ARCHITECTURE_OF:
        return f"{backbone.NAME} (a tiny CLIP trained here on procedural captions, not OpenAI's)"
    return f"{backbone.NAME} (OpenAI's released weights)"


def _check_name(name):
    if name not in _MODELS and name not in TINY_ARCHITECTURE_OF:
        raise ConfigError(f"MODEL.BACKBONE.NAME = {name!r} is not a CLIP model; use one of "
                          f"{[*_MODELS, *TINY_ARCHITECTURE_OF]} (or set MODEL.BACKBONE.PATH to a weights file)")


def cache_dir():
    return os.path.expanduser(os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "clip"))


def _download(url, target, expected_sha256):
    """Fetch `url` into `target` via a .part file, so a cut download never poses as weights."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = target + ".part"
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as source, open(partial, "wb") as out:
        total = int(source.info().get("Content-Length") or 0) or None
        with tqdm(total=total, unit="iB", unit_scale=True, unit_divisor=1024,
                  desc=f"Downloading {os.path.basename(target)}") as bar:
            for block in iter(lambda: source.read(1 << 16), b""):
                out.write(block)
                bar.update(len(block))
    if file_sha256(partial) != expected_sha256:
        raise WeightsUnavailable(f"Downloaded {url} but its sha256 does not match {expected_sha256}; "
                           f"the partial file is kept at {partial} for inspection. Retry the download.")
    os.replace(partial, target)


def _offline_error(name, url, target, reason):
    return WeightsUnavailable(
        f"CLIP weights for {name!r} are not available offline ({reason}).\n"
        f"  Download {url}\n"
        f"  and put the file at {target}\n"
        f"  (cache folder: ${CACHE_ENV} or ~/.cache/clip), or set MODEL.BACKBONE.PATH to the file, "
        f"or MODEL.BACKBONE.PRETRAINED False for random weights.")


def resolve_weights_file(name, path=""):
    """Return a local file with the weights of `name` (explicit `path` first, then the cache)."""
    if path:
        if not os.path.isfile(path):
            raise WeightsPathMissing(f"MODEL.BACKBONE.PATH = {path!r} is not a file; point it at a "
                                    f"CLIP weights file (.pt) or set it to \"\" to load by name")
        return path
    _check_name(name)
    if name in TINY_ARCHITECTURE_OF:
        from .tiny_pretrained import SETTINGS, ensure_weights
        return ensure_weights(SETTINGS[name])
    url = _MODELS[name]
    expected_sha256 = url.split("/")[-2]
    target = os.path.join(cache_dir(), os.path.basename(url))
    offline = os.environ.get(OFFLINE_ENV, "") not in ("", "0")
    if os.path.isfile(target):
        if file_sha256(target) == expected_sha256:
            return target
        if offline:
            raise _offline_error(name, url, target, f"{target} exists but its sha256 is not "
                                 f"{expected_sha256}: the file is corrupt or another model")
        print(f"{target} fails its sha256 check; downloading it again")
    elif offline:
        raise _offline_error(name, url, target, f"{OFFLINE_ENV} is set and {target} does not exist")
    print(f"Downloading CLIP {name} from {url} to {target}")
    try:
        _download(url, target, expected_sha256)
    except (urllib.error.URLError, OSError) as err:  # URLError covers DNS; OSError covers timeouts
        raise _offline_error(name, url, target, f"download failed: {err}") from err
    return target


def read_state_dict(path):
    """State dict of an OpenAI TorchScript archive or of a plain `torch.save`d state dict."""
    try:
        with warnings.catch_warnings():  # torch>=2.9 flags jit.load as deprecated; it still works
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(path, map_location="cpu").state_dict()
    except RuntimeError:  # not a TorchScript archive
        pass
    try:
        state_dict = torch.load(path, map_location="cpu")
    except Exception as e:  # truncated download, a text/HTML file, another format
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in str(e) or "Unpickl" in type(e).__name__:
            reason = "not a PyTorch weights file"
        raise WeightsFileError(f"CLIP weights file {path} cannot be read: it is truncated or not a CLIP .pt file "
                               f"({reason}). Download it again (official URLs: clip.clip._MODELS) or fix "
                               "MODEL.BACKBONE.PATH.") from e
    if not isinstance(state_dict, dict) or "text_projection" not in state_dict:
        raise WeightsFileError(f"{path} does not hold a CLIP state dict (no 'text_projection' key); "
                               f"expected an OpenAI CLIP .pt file")
    return state_dict


def _count(state_dict, prefix, depth):
    return len({k.split(".")[depth] for k in state_dict if k.startswith(prefix)})


def architecture_of(state_dict):
    """Name of the architecture (official or toy) a CLIP state dict holds, else None;
    the shapes are read the way `clip.model.build_model` reads them."""
    try:
        if "visual.proj" in state_dict:
            conv1 = state_dict["visual.conv1.weight"]
            patch = conv1.shape[-1]
            grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = dict(vision_width=conv1.shape[0], vision_patch_size=patch, image_resolution=patch * grid,
                          vision_layers=_count(state_dict, "visual.transformer.resblocks.", 3))
        else:
            grid = round((state_dict["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
            vision = dict(vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0], vision_patch_size=None,
                          image_resolution=grid * 32,
                          vision_layers=tuple(_count(state_dict, f"visual.layer{b}.", 2) for b in range(1, 5)))
        found = dict(vision, embed_dim=state_dict["text_projection"].shape[1],
                     transformer_width=state_dict["ln_final.weight"].shape[0],
                     transformer_layers=_count(state_dict, "transformer.resblocks.", 2))
    except (KeyError, IndexError, AttributeError):
        return None
    for name, arch in {**CLIP_ARCHITECTURES, **TOY_ARCHITECTURES}.items():
        if all(arch[k] == v for k, v in found.items()):
            return name
    return None


def check_architecture(state_dict, name, path):
    """The architecture really in `path`: an official one must be the one `name` says (an
    RN101 run on ViT weights would be recorded as RN101); a toy/custom one is accepted and
    reported, since no official name describes it."""
    found = architecture_of(state_dict)
    if found == name or (name in TINY_ARCHITECTURE_OF and found == TINY_ARCHITECTURE_OF[name]):
        return name
    if found in CLIP_ARCHITECTURES:
        raise WeightsFileError(f"{path} holds CLIP {found} weights, but MODEL.BACKBONE.NAME is {name}. Set "
                               f"MODEL.BACKBONE.NAME {found} (or --backbone {found}), or point MODEL.BACKBONE.PATH "
                               f"at a {name} weights file.")
    loaded = found or "custom"
    print(f"Note: {path} holds a non-released CLIP architecture ({loaded}), not {name}; "
          f"results are recorded as backbone {loaded}.")
    return loaded


def build_random_clip(name, seed=0):
    """The `name` architecture with random weights, fp16 and eval mode like `build_model`.

    The global RNG is forked so building it does not shift the random stream of the run.
    """
    _check_name(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(**(TOY_ARCHITECTURES[TINY_ARCHITECTURE_OF[name]] if name in TINY_ARCHITECTURE_OF
                        else CLIP_ARCHITECTURES[name]))
    convert_weights(model)
    return model.eval()


def load_clip_to_cpu(cfg):
    """The CLIP model `cfg.MODEL.BACKBONE` names, on CPU, fp16 weights, eval mode. Its
    `architecture` attribute names the architecture really loaded."""
    backbone = cfg.MODEL.BACKBONE
    path = backbone.get("PATH", "")
    if not backbone.PRETRAINED:
        if path:
            raise ConfigError(f"MODEL.BACKBONE.PRETRAINED is False but MODEL.BACKBONE.PATH = {path!r}; "
                              f"clear one of them (random weights or the file, not both)")
        print(f"MODEL.BACKBONE.PRETRAINED is False: CLIP {backbone.NAME} gets RANDOM weights (seed 0), "
              f"accuracies are meaningless")
        model = build_random_clip(backbone.NAME)
        model.architecture = backbone.NAME
        return model
    weights = resolve_weights_file(backbone.NAME, path)
    print(f"Loading CLIP weights from {weights}")
    state_dict = read_state_dict(weights)
    architecture = check_architecture(state_dict, backbone.NAME, weights)
    try:
        model = build_model(state_dict)
    except (RuntimeError, KeyError, IndexError, ValueError) as e:
        raise WeightsFileError(_unfit_weights_message(state_dict, architecture, weights, e)) from e
    model.architecture = architecture
    return model


def _unfit_weights_message(state_dict, architecture, path, error):
    """Why `path` does not build CLIP `architecture`: the first missing and unexpected keys
    (against the architecture built without storage), else the library's own last line."""
    arch = {**CLIP_ARCHITECTURES, **TOY_ARCHITECTURES}.get(architecture)
    detail = ""
    if arch is not None:
        with torch.device("meta"):
            expected = set(CLIP(**arch).state_dict())
        given = set(state_dict) - {"input_resolution", "context_length", "vocab_size"}
        missing, unexpected = sorted(expected - given), sorted(given - expected)
        parts = [f"{len(keys)} {what} key(s) ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        detail = "; ".join(parts)
    if not detail:
        lines = [ln.strip() for ln in str(error).strip().splitlines() if ln.strip()]
        detail = lines[-1] if lines else type(error).__name__
    return (f"CLIP weights file {path} does not fit the {architecture} architecture: {detail}. Use the complete "
            f"weights file of that model (official URLs: clip.clip._MODELS), or fix MODEL.BACKBONE.PATH / "
            f"MODEL.BACKBONE.NAME.")


def check_input_size(cfg, clip_model):
    """Fail with the fix when INPUT.SIZE differs from the resolution CLIP's positional
    embeddings were built for (otherwise the first forward pass dies with a shape error)."""
    size = clip_model.visual.input_resolution
    if tuple(cfg.INPUT.SIZE) != (size, size):
        raise ConfigError(f"INPUT.SIZE = {tuple(cfg.INPUT.SIZE)} but CLIP {cfg.MODEL.BACKBONE.NAME} "
                         f"takes {size}x{size} images; set INPUT.SIZE ({size}, {size})")
