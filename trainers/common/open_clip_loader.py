"""open_clip models (the `open-clip-torch` package) behind the Backbone interface.

MODEL.BACKBONE.NAME `open_clip:ARCH/TAG`: open_clip's architecture ARCH (`open_clip.list_models()`)
with its pretrained weights TAG (`open_clip.list_pretrained_tags_by_model(ARCH)`), e.g.
open_clip:ViT-B-16/laion2b_s34b_b88k, open_clip:ViT-B-16-SigLIP2/webli, open_clip:RN50/openai.
`open_clip:ARCH` alone takes MODEL.BACKBONE.PATH (a state dict saved from
`open_clip.create_model(ARCH)`, .pt/.bin or .safetensors) or PRETRAINED False (random weights,
seed 0); with PATH a TAG, when given, only names the preprocessing and the tables.

Weights of a TAG are found where open_clip keeps them: the Hugging Face cache for hub-hosted
weights ($HF_HOME / ~/.cache/huggingface), ~/.cache/clip for URL-hosted ones. Offline
(HF_HUB_OFFLINE=1 or CLIP_OFFLINE=1, or no network) a missing file is one message naming the
file to fetch and where to put it.

Towers: open_clip's native text tower (CLIP / CustomTextCLIP's TextTransformer: causal, EOT =
argmax pooling, or SigLIP: no causal mask, last-token pooling, logit bias), image towers of
every kind (ViT blocks, ModifiedResNet, timm trunks). Text towers from `transformers`
(hf_model_name: roberta, mt5, ...), CoCa's appended class token and padding masks are refused.

The toolkit's own small architectures (configs/open_clip/*.json: `fewshot-tiny-rn-quickgelu`,
`fewshot-tiny-vit-quickgelu`, and `fewshot-tiny-sigmoid`: a SigLIP-style text tower without causal
mask, last-token pooling and logit bias, with CLIP's BPE tokenizer) are registered with open_clip here, for
tests, demos and CPU benchmarks.
"""
import difflib
import logging
import os
import tempfile
import warnings

import torch
import torch.nn as nn

from dassl.config.merge import ConfigError
from dassl.utils.errors import UserError

from .backbone import OPEN_CLIP_PREFIX, Backbone, Preprocess, Tower, _plain_blocks
from .clip_loader import OFFLINE_ENV, WeightsFileError, WeightsPathMissing, WeightsUnavailable

TOOLKIT_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               "configs", "open_clip")
RANDOM_SEED = 0
_registered = False


class TokenizerUnavailable(UserError):
    """The model's tokenizer needs files that are neither cached nor downloadable."""


def _open_clip():
    global _registered
    import open_clip
    if not _registered and os.path.isdir(TOOLKIT_CONFIGS):
        open_clip.add_model_config(TOOLKIT_CONFIGS)
        _registered = True
    return open_clip


def parse_name(name):
    """open_clip:ARCH/TAG -> (ARCH, TAG or "")."""
    body = name[len(OPEN_CLIP_PREFIX):]
    arch, _, tag = body.partition("/")
    if not arch:
        raise ConfigError(f"MODEL.BACKBONE.NAME = {name!r}: name an open_clip architecture, "
                          f"e.g. open_clip:ViT-B-16/laion2b_s34b_b88k")
    return arch, tag


def _check_arch_and_tag(name):
    open_clip = _open_clip()
    arch, tag = parse_name(name)
    models = open_clip.list_models()
    if arch not in models:
        close = difflib.get_close_matches(arch, models, n=5, cutoff=0.5)
        hint = f"close names: {', '.join(close)}" if close else "open_clip.list_models() lists them"
        raise ConfigError(f"MODEL.BACKBONE.NAME = {name!r}: open_clip has no architecture {arch!r} ({hint})")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag and not open_clip.get_pretrained_cfg(arch, tag):
        raise ConfigError(f"MODEL.BACKBONE.NAME = {name!r}: open_clip has no weights {tag!r} for {arch}; "
                          f"its tags: {', '.join(tags) or 'none (use MODEL.BACKBONE.PATH)'}")
    model_cfg = open_clip.get_model_config(arch)
    text_cfg = model_cfg.get("text_cfg", {})
    if "hf_model_name" in text_cfg:
        raise ConfigError(f"MODEL.BACKBONE.NAME = {name!r}: its text tower is a transformers model "
                          f"({text_cfg['hf_model_name']}), which this toolkit does not drive; use an "
                          f"architecture with open_clip's own text tower (ViT-*, RN*, *-SigLIP*, EVA*, ...)")
    if "multimodal_cfg" in model_cfg or text_cfg.get("embed_cls") or text_cfg.get("use_pad_mask"):
        raise ConfigError(f"MODEL.BACKBONE.NAME = {name!r}: CoCa-style text towers (class token, padding "
                          f"masks) are not supported; use a CLIP or SigLIP architecture")
    return arch, tag, model_cfg, (open_clip.get_pretrained_cfg(arch, tag) if tag else {})


def open_clip_preprocess(name):
    """(Preprocess, resize_mode) of `name`, as open_clip sets it, without building the model."""
    from open_clip.transform import PreprocessCfg
    arch, tag, model_cfg, tag_cfg = _check_arch_and_tag(name)
    base = PreprocessCfg()
    size = model_cfg["vision_cfg"].get("image_size", base.size)
    if isinstance(size, (list, tuple)):
        if size[0] != size[1]:
            raise ConfigError(f"{name}: non-square input size {tuple(size)} is not supported")
        size = size[0]
    mean = tuple(tag_cfg.get("mean", base.mean))
    std = tuple(tag_cfg.get("std", base.std))
    interpolation = tag_cfg.get("interpolation", base.interpolation)
    return Preprocess(int(size), mean, std, interpolation), tag_cfg.get("resize_mode", base.resize_mode)


def _offline():
    return any(os.environ.get(k, "") not in ("", "0") for k in ("HF_HUB_OFFLINE", OFFLINE_ENV))


def _weights_missing(name, where, reason):
    return WeightsUnavailable(
        f"open_clip weights for {name} are not available ({reason}).\n{where}\n"
        f"  Or set MODEL.BACKBONE.PATH to a state dict of that architecture (open_clip.create_model(ARCH)"
        f".state_dict(), .pt/.bin/.safetensors), or MODEL.BACKBONE.PRETRAINED False for random weights.")


def resolve_weights(name, tag_cfg):
    """Local file with the weights of a tag: the HF cache or ~/.cache/clip, downloaded when online."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from open_clip.pretrained import download_pretrained
    if tag_cfg.get("hf_hub"):
        repo, filename = os.path.split(tag_cfg["hf_hub"])  # "org/repo/" names the default file
        filename = filename or HF_WEIGHTS_NAME
        candidates = ([HF_SAFE_WEIGHTS_NAME] if filename == HF_WEIGHTS_NAME else []) + [filename]
        from huggingface_hub import constants as hf_constants
        from huggingface_hub import try_to_load_from_cache
        for candidate in candidates:
            found = try_to_load_from_cache(repo, candidate)
            if isinstance(found, str) and os.path.isfile(found):
                return found
        where = (f"  Fetch https://huggingface.co/{repo}/resolve/main/{candidates[0]} (or {filename}) on a machine "
                 f"with network: `huggingface-cli download {repo} {candidates[0]}` fills the Hugging Face cache "
                 f"{hf_constants.HF_HUB_CACHE} (copy that folder here), or save the file anywhere and set "
                 f"MODEL.BACKBONE.PATH to it.")
    else:
        url = tag_cfg.get("url", "")
        target = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(target):
            return target
        where = f"  Download {url}\n  and put the file at {target} (or set MODEL.BACKBONE.PATH to it)."
    if _offline():
        raise _weights_missing(name, where, "offline mode (HF_HUB_OFFLINE / CLIP_OFFLINE) and not in the cache")
    print(f"Downloading the open_clip weights of {name}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return download_pretrained(tag_cfg)
    except Exception as err:  # no network, hub errors, a cut download
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise _weights_missing(name, where, f"download failed: {reason}") from None


def _build(arch, quick_gelu):
    """The architecture with random weights (seed RANDOM_SEED, the run's RNG left as it was)."""
    open_clip = _open_clip()
    logging.disable(logging.WARNING)  # open_clip logs "initialized randomly": the weights come next
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(RANDOM_SEED)
            model = open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu,
                                           pretrained_image=False, pretrained_text=False)
    finally:
        logging.disable(logging.NOTSET)
    return model


def load_weights(model, path, arch):
    """Load a state dict file into `model`; wrong keys or shapes: one message naming the file,
    the architecture and the first keys."""
    from open_clip.factory import load_checkpoint, load_state_dict
    with tempfile.TemporaryDirectory() as tmp:
        result = _load_checkpoint(model, _plain_file(path, tmp), path, arch, load_checkpoint, load_state_dict)
    missing, unexpected = getattr(result, "missing_keys", []), getattr(result, "unexpected_keys", [])
    if missing or unexpected:
        _key_error(path, arch, missing, unexpected)


def _plain_file(path, tmp):
    """An OpenAI TorchScript archive (.pt) as a plain state dict file; other files as they are."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state_dict = torch.jit.load(path, map_location="cpu").state_dict()
    except (RuntimeError, ValueError):  # not a TorchScript archive
        return path
    for key in ("input_resolution", "context_length", "vocab_size"):
        state_dict.pop(key, None)
    plain = os.path.join(tmp, "state_dict.pt")
    torch.save(state_dict, plain)
    return plain


def _load_checkpoint(model, file, path, arch, load_checkpoint, load_state_dict):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_checkpoint(model, file, strict=False)
    except (RuntimeError, AssertionError) as err:  # shape mismatches (load_state_dict, open_clip's resizing)
        try:  # other keys say more than the first shape that differs
            keys = set(load_state_dict(file))
        except Exception:
            keys = None
        if keys is not None:
            wanted = set(model.state_dict())
            missing, unexpected = sorted(wanted - keys - {"logit_bias"}), sorted(keys - wanted)
            if missing or unexpected:
                _key_error(path, arch, missing, unexpected)
        text = str(err).strip().splitlines()
        detail = next((line.strip() for line in text if "size mismatch" in line), text[0] if text else "")
        raise WeightsFileError(f"{path} does not hold weights of the open_clip architecture {arch} "
                               f"({detail[:300]}). Point MODEL.BACKBONE.PATH at a state dict saved from "
                               f"open_clip.create_model({arch!r}), or name the architecture it was saved from.") from None
    except Exception as err:  # truncated file, not a torch/safetensors file
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise WeightsFileError(f"open_clip weights file {path} cannot be read ({reason}); it is truncated or not "
                               f"a state dict. Download it again or fix MODEL.BACKBONE.PATH.") from None


def _key_error(path, arch, missing, unexpected):
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:3])}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:3])}")
    raise WeightsFileError(f"{path} does not match the open_clip architecture {arch}: {'; '.join(parts)}. "
                           f"Point MODEL.BACKBONE.PATH at a state dict saved from open_clip.create_model({arch!r}), "
                           f"or set MODEL.BACKBONE.NAME to the architecture it was saved from.")


def _tokenizer(name, arch, parts):
    """The model's tokenizer (open_clip.get_tokenizer), built on first use: SigLIP's comes from the
    Hugging Face hub and may be missing offline, which must not stop code that feeds token ids."""
    from .backbone import Tokenizer
    open_clip = _open_clip()
    state = {}

    def get():
        if "tok" not in state:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    state["tok"] = open_clip.get_tokenizer(arch, context_length=parts["context_length"])
            except ImportError as err:  # Hugging Face tokenizers need the transformers package
                raise TokenizerUnavailable(f"The tokenizer of {name} is a Hugging Face tokenizer, which needs the "
                                           f"{err.name or 'transformers'} package: pip install -e '.[siglip]' "
                                           "(or pip install transformers).") from None
            except Exception as err:  # hub files missing offline (OSError), fsspec without http support, ...
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                repo = open_clip.get_model_config(arch)["text_cfg"].get("hf_tokenizer_name", "")
                if repo:
                    raise TokenizerUnavailable(
                        f"The tokenizer of {name} is the Hugging Face tokenizer {repo}, which is not in the Hugging "
                        f"Face cache and cannot be downloaded here ({reason}). Run once with network access (it is "
                        f"cached under $HF_HOME, default ~/.cache/huggingface), or on a machine with network run "
                        f"`huggingface-cli download {repo}` and copy ~/.cache/huggingface/hub here; then "
                        f"HF_HUB_OFFLINE=1 keeps runs offline.") from None
                raise TokenizerUnavailable(f"The tokenizer of {name} cannot be built here ({reason}); open_clip "
                                           f"fetches its vocabulary file on first use, which needs network access "
                                           f"(and the requests and aiohttp packages).") from None
        return state["tok"]

    def count(text):
        tok = get()
        if hasattr(tok, "encode"):  # open_clip's SimpleTokenizer (cleans the text itself)
            return len(tok.encode(text))
        return len(tok.tokenizer(tok.clean_fn(text), add_special_tokens=False)["input_ids"])

    def specials():
        """(tokens before the text, special tokens in all) of the tokenizer."""
        tok = get()
        if hasattr(tok, "encode"):
            return 1, 2
        plain = tok.tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tok.tokenizer("a")["input_ids"]
        start = full.index(plain[0]) if plain and plain[0] in full else 0
        return start, len(full) - len(plain)

    def tokenize(texts):
        return get()(texts).long()

    return Tokenizer(tokenize, count, parts["context_length"], lambda: specials()[0], lambda: specials()[1],
                     name)


def _text_parts(model):
    """Where the text tower's pieces are: on the model (CLIP) or on model.text (CustomTextCLIP)."""
    text = getattr(model, "text", None) or model
    return {
        "token_embedding": text.token_embedding, "positional_embedding": text.positional_embedding,
        "transformer": text.transformer, "ln_final": text.ln_final, "projection": text.text_projection,
        "mask": text.attn_mask, "pool": getattr(model, "text_pool_type", None) or text.pool_type,
        "eos_id": getattr(model, "text_eos_id", None) if text is model else text.eos_id,
        "context_length": text.positional_embedding.shape[0],
    }


def _vision_tower(visual):
    if hasattr(visual, "transformer") and hasattr(visual.transformer, "resblocks"):  # open_clip ViT
        ln_pre = visual.ln_pre if not isinstance(visual.ln_pre, nn.Identity) else None
        return Tower(blocks=visual.transformer.resblocks, width=visual.transformer.width,
                     batch_first=visual.transformer.batch_first, causal=False, ln_pre=ln_pre)
    trunk = getattr(visual, "trunk", None)
    if trunk is not None and hasattr(trunk, "blocks"):  # timm ViT (SigLIP, EVA)
        norm_pre = getattr(trunk, "norm_pre", None)
        return Tower(blocks=trunk.blocks, width=getattr(trunk, "embed_dim", None), batch_first=True, causal=False,
                     ln_pre=None if norm_pre is None or isinstance(norm_pre, nn.Identity) else norm_pre)
    return Tower(blocks=None, width=None, batch_first=True, causal=False)  # ModifiedResNet, timm CNNs


def _cast_half(model):
    """open_clip's own fp16 recipe: weights of native towers in fp16 with fp32 norms; timm
    trunks all fp16 except their fp32 LayerNorms."""
    from open_clip.factory import _set_model_device_and_precision
    is_timm = hasattr(model.visual, "trunk")
    _set_model_device_and_precision(model, next(model.parameters()).device, "fp16", is_timm)


def backbone_from_open_clip_model(model, name, arch, weights, preprocess, resize_mode="shortest", tag=""):
    """An open_clip model of architecture `arch` behind the Backbone interface."""
    architecture = f"{OPEN_CLIP_PREFIX}{arch}" + (f"/{tag}" if tag else "")
    parts = _text_parts(model)
    if parts["pool"] not in ("argmax", "last", "eos", "first"):
        raise ConfigError(f"{name}: text pooling {parts['pool']!r} is not supported")
    transformer = parts["transformer"]
    blocks = transformer.resblocks

    def run_block(block, x, attn_mask):
        return block(x, attn_mask=attn_mask)

    text = Tower(blocks=blocks, width=transformer.width, batch_first=transformer.batch_first,
                 causal=parts["mask"] is not None, positional_embedding=parts["positional_embedding"],
                 ln_final=parts["ln_final"], mask=parts["mask"], block_runner=run_block,
                 plain_blocks=_plain_blocks(blocks))
    projection = parts["projection"]
    if projection is None:
        raise ConfigError(f"{name}: the text tower has no projection; not a contrastive image-text model")
    return Backbone(model, name=name, architecture=architecture, library="open_clip", weights=weights,
                    text_tower=text, vision_tower=_vision_tower(model.visual),
                    token_embedding=parts["token_embedding"], text_projection=projection, pool=parts["pool"],
                    eos_id=parts["eos_id"], tokenizer=_tokenizer(name, arch, parts),
                    preprocess=preprocess, resize_mode=resize_mode, logit_bias=getattr(model, "logit_bias", None),
                    dtype_of=lambda m: transformer.get_cast_dtype(), cast_half=_cast_half)


def load_open_clip(cfg):
    """The open_clip backbone cfg.MODEL.BACKBONE names (module docstring), fp32, eval mode, CPU."""
    backbone = cfg.MODEL.BACKBONE
    name, path = backbone.NAME, backbone.get("PATH", "")
    arch, tag, _, tag_cfg = _check_arch_and_tag(name)
    preprocess, resize_mode = open_clip_preprocess(name)
    if not backbone.PRETRAINED:
        if path:
            raise ConfigError(f"MODEL.BACKBONE.PRETRAINED is False but MODEL.BACKBONE.PATH = {path!r}; "
                              f"clear one of them (random weights or the file, not both)")
        print(f"MODEL.BACKBONE.PRETRAINED is False: open_clip {arch} gets RANDOM weights (seed {RANDOM_SEED}), "
              f"accuracies are meaningless")
        weights = "random"
        file = None
    elif path:
        if not os.path.isfile(path):
            raise WeightsPathMissing(f"MODEL.BACKBONE.PATH = {path!r} is not a file; point it at a state dict of "
                                     f"open_clip {arch} (.pt/.bin/.safetensors) or set it to \"\" to load by name")
        weights, file = path, path
    elif not tag:
        raise ConfigError(f"MODEL.BACKBONE.NAME = {name!r} names no pretrained weights: use "
                          f"open_clip:{arch}/TAG (tags: {', '.join(_open_clip().list_pretrained_tags_by_model(arch)) or 'none'}), "
                          f"set MODEL.BACKBONE.PATH to a weights file, or MODEL.BACKBONE.PRETRAINED False")
    else:
        file = resolve_weights(name, tag_cfg)
        weights = f"open_clip {arch} weights {tag} ({file})"
    model = _build(arch, bool(tag_cfg.get("quick_gelu", False)))
    if file is not None:
        print(f"Loading open_clip weights from {file}")
        load_weights(model, file, arch)
    model.eval()
    return backbone_from_open_clip_model(model, name, arch, weights, preprocess, resize_mode, tag).eval()
