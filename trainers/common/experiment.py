"""What the experiment layer needs to know about a method, declared once next to its trainer.

A trainer file registers its trainer in `TRAINER_REGISTRY` and, beside it, one `Method`:

    register_method(Method(
        name="taskres", trainer="TaskRes", label="TaskRes",
        config=lambda dataset, shots: ...,        # config stem in configs/trainers/TaskRes/
        overrides=lambda dataset, shots: [...],   # KEY VALUE pairs, e.g. alpha per dataset
    ))

The planner, the scripts, the launcher, the demo, the tables and the plots read only these
declarations, so a new method is one file (plus its configs). A file outside the repository
works too: pass it as `--plugin FILE.py` or list it in the PLUGINS environment variable.
"""
import importlib.util
import os
import os.path as osp
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

PLUGINS_ENV = "PLUGINS"  # plugin files (os.pathsep-separated) every entry point imports


def _no_overrides(dataset: str, shots: int) -> List[str]:
    return []


def _as_is(value: str, dataset: str, shots: int) -> str:
    return value


@dataclass(frozen=True)
class Option:
    """A setting a user may change per sweep (an environment variable in the scripts, named by
    its key in `Method.options`; `--option NAME=VALUE` for the launcher)."""
    key: str  # config key it sets ("TRAINER.COOP.N_CTX"), or a train.py flag ("--enhanced-base")
    default: str
    help: str = ""
    choices: Tuple[str, ...] = ()  # allowed values; empty: any
    normalize: Callable[[str], str] = str  # e.g. "true" -> "True"; raises ValueError if invalid
    resolve: Callable[[str, str, int], str] = _as_is  # (value, dataset, shots) -> train.py value
    unset: Tuple[str, ...] = ()  # values that pass nothing to train.py (e.g. "", "none")
    # (value, the method's config stem) -> the config stem to use: an option that picks the
    # config file (e.g. the backbone), so runs of different values land in different folders.
    config_stem: Optional[Callable[[str, str], str]] = None


# The CLIP backbones of the papers' backbone comparisons; RN50 is the default everywhere.
# Any open_clip model is accepted too: open_clip:ARCH/TAG (trainers/common/backbone.py).
BACKBONES = ("RN50", "RN101", "ViT-B/32", "ViT-B/16")
DEFAULT_BACKBONE = "RN50"
OPEN_CLIP = "open_clip:"
CONFIG_SEP = "@"  # <backbone>@<config stem>: a backbone run with the config of another one


def backbone_stem(backbone: str) -> str:
    """RN50 -> rn50, ViT-B/16 -> vit_b16 (config file names and enhanced-base folders)."""
    return backbone.lower().replace("/", "").replace("-", "_")


def backbone_name(value: str) -> str:
    """A backbone the sweeps accept: one of BACKBONES or open_clip:ARCH/TAG."""
    if value in BACKBONES:
        return value
    arch, _, tag = value[len(OPEN_CLIP):].partition("/")
    if value.startswith(OPEN_CLIP) and arch and all(c.isalnum() or c in "._-" for c in arch + tag):
        return value
    raise ValueError(f"use one of {', '.join(BACKBONES)} or open_clip:ARCH/TAG (e.g. "
                     f"open_clip:ViT-B-16/laion2b_s34b_b88k)")


def open_clip_slug(backbone: str) -> str:
    """open_clip:ViT-B-16/laion2b_s34b_b88k -> openclip-ViT-B-16-laion2b-s34b-b88k: a folder-name
    part without '/' (or '_', which separates config tokens); result.json keeps the exact name."""
    return "openclip-" + backbone[len(OPEN_CLIP):].replace("/", "-").replace("_", "-")


def config_file_stem(cfg: str) -> str:
    """The config file of a (possibly backbone-prefixed) config stem."""
    return cfg.split(CONFIG_SEP, 1)[-1]


def backbone_option(config_stem: Optional[Callable[[str, str], str]] = None, default: str = DEFAULT_BACKBONE,
                    vit_only: bool = False) -> Option:
    """The BACKBONE option. Another `clip` backbone picks the config file that names it, via
    `config_stem(backbone, the default backbone's config stem)`; with no `config_stem` the method
    has one config for every backbone, run in a folder named after the backbone
    (`vit_b16@rn50_16shots`). An open_clip backbone runs the default backbone's config (its own
    preprocessing replaces INPUT.*) in a folder named after it (`<slug>@<stem>_<K>shots`).
    `vit_only`: the method works inside a ViT image tower; other `clip` backbones are refused."""
    def stem(backbone: str, default_stem: str) -> str:
        if backbone == default:
            return default_stem
        if backbone.startswith(OPEN_CLIP):
            return f"{open_clip_slug(backbone)}{CONFIG_SEP}{default_stem}"
        if config_stem is None:
            return f"{backbone_stem(backbone)}{CONFIG_SEP}{default_stem}"
        return config_stem(backbone, default_stem)

    def normalize(value: str) -> str:
        name = backbone_name(value)
        if vit_only and name in BACKBONES and not name.startswith("ViT"):
            vits = ", ".join(b for b in BACKBONES if b.startswith("ViT"))
            raise ValueError(f"this method needs a ViT image tower: use {vits} or an open_clip ViT "
                             "(open_clip:ARCH/TAG)")
        return name
    choices = ", ".join(b for b in BACKBONES if b.startswith("ViT") or not vit_only)
    return Option("MODEL.BACKBONE.NAME", default, f"backbone: {choices} or open_clip:ARCH/TAG",
                  normalize=normalize, unset=(default,), config_stem=stem)


def rn50_prefix_replaced(backbone: str, stem: str) -> str:
    """rn50_ep50 -> vit_b16_ep50: config families named after the backbone (CoOp, CLIP-Adapter,
    zero-shot CLIP, linear probe)."""
    if backbone == DEFAULT_BACKBONE or not stem.startswith("rn50"):
        return stem
    return backbone_stem(backbone) + stem[len("rn50"):]


@dataclass(frozen=True)
class Method:
    name: str  # command-line name: scripts/<name>/main.sh, `--methods <name>`
    trainer: str  # TRAINER_REGISTRY key
    label: str  # shown in tables and plots
    config: Callable[[str, int], str]  # (dataset config stem, shots) -> config stem
    overrides: Callable[[str, int], List[str]] = _no_overrides  # per dataset and shots
    options: Mapping[str, Option] = field(default_factory=dict)  # e.g. {"NCTX": Option(...)}
    variant: Optional[Callable[[Dict[str, str]], str]] = None  # variant folder from option values
    trains: bool = True  # False: evaluation only, one seedless run at 0 shots
    # False: it learns something per training class (a residual, a cache, a linear head), so a
    # model trained on the base classes cannot classify new ones (base-to-new refuses it).
    new_classes: bool = True
    # Other trainers the user may pick instead (TRAINER=...); they share this method's configs.
    alternatives: Tuple[str, ...] = ()
    # Folder of its config files (a relative path: in the repository); "" for
    # configs/trainers/<trainer>/; None for none (train.py then runs on the default config,
    # the overrides and the options).
    config_dir: Optional[str] = ""
    plugin: str = ""  # the plugin file that declared it ("" for the repository's own methods)
    # Selection protocols it can honour (dassl/engine/protocol.py), its default first. Any
    # trained method may also run fsval/fullval with TEST.FINAL_MODEL best_val (the engine's
    # best-epoch selection), which needs nothing of the method.
    protocols: Tuple[str, ...] = ("nov",)

    @property
    def trainers(self) -> Tuple[str, ...]:
        return (self.trainer, *self.alternatives)


METHODS: Dict[str, Method] = {}
_loading_plugin = [""]  # the plugin file being imported, recorded in its methods


def register_method(method: Method) -> Method:
    if method.name in METHODS:
        raise KeyError(f'A method named "{method.name}" is already registered '
                       f"(trainer {METHODS[method.name].trainer}); pick another name")
    if _loading_plugin[0] and not method.plugin:
        method = Method(**{**method.__dict__, "plugin": _loading_plugin[0]})
    METHODS[method.name] = method
    return method


def import_plugin(path: str):
    """Import a user file that registers trainers, datasets or methods (once per file)."""
    path = osp.abspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f"plugin file not found: {path}")
    name = "plugin_" + osp.splitext(osp.basename(path))[0]
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__file__", None) == path:
        return loaded
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    _loading_plugin[0] = path
    try:
        spec.loader.exec_module(module)
    finally:
        _loading_plugin[0] = ""
    return module


def plugin_files(given: Sequence[str] = ()) -> List[str]:
    """--plugin files, then those of $PLUGINS, each once."""
    listed = [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p.strip()]
    return list(dict.fromkeys(osp.abspath(p) for p in [*given, *listed]))


def load_methods(plugins: Sequence[str] = ()) -> Dict[str, Method]:
    """Every declared method: the repository's trainers, then the plugin files."""
    import trainers  # noqa: F401  (each trainer file declares its method)
    for path in plugin_files(plugins):
        import_plugin(path)
    return METHODS


def method_of_trainer(trainer: str) -> Optional[Method]:
    """The method whose trainer (or alternative) is `trainer`, if one is declared."""
    return next((m for m in METHODS.values() if trainer in m.trainers), None)


def resolve_protocol(trainer, requested, final_model):
    """The run's protocol: `requested` (PROTOCOL) if the trainer's method honours it, else one
    clear error; "" means the method's default. A trainer no method declares: fsval when it
    selects its epoch on val (TEST.FINAL_MODEL best_val), else nov."""
    from dassl.config.merge import ConfigError
    from dassl.engine.protocol import PROTOCOLS, check_protocol

    method = method_of_trainer(trainer)
    selects_epoch = final_model == "best_val"
    if not requested:
        if method is None:
            return "fsval" if selects_epoch else "nov"
        default = method.protocols[0]
        return "fsval" if default == "nov" and selects_epoch else default
    check_protocol(requested)
    supported = method.protocols if method is not None else tuple(PROTOCOLS)
    if requested == "nov" and selects_epoch and supported == ("nov",):
        raise ConfigError(f"PROTOCOL nov forbids selection on held-out data, but TEST.FINAL_MODEL is best_val "
                          f"(the best epoch on val) for {trainer}. Set TEST.FINAL_MODEL last_step, or PROTOCOL fsval.")
    if requested in supported or (selects_epoch and requested in ("fsval", "fullval")):
        return requested
    raise ConfigError(
        f"PROTOCOL {requested}: {method.label} ({trainer}) supports {', '.join(supported)} "
        f"(default {supported[0]}); {requested} would mean {PROTOCOLS[requested]}. Drop PROTOCOL "
        "for the default or pick a supported one.")
