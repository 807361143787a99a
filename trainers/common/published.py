"""Published ViT-B/16 results of the base-to-new protocol (16 shots, base half of the classes,
seeds 1-3 averaged) and of cross-dataset transfer (trained on ImageNet, all classes, 16 shots),
keyed by our trainer name; the tables print them beside our runs.

A method file registers its own numbers next to its trainer (`register_published`). Datasets are
config stems; every series also has "average" (the papers' 11-dataset mean, whose HM is the HM
of the averaged base and new accuracies).

How far the numbers are checked: the base-to-new averages of CLIP, CoOp, CoCoOp, KgCoOp, MaPLe
and PromptSRC match the official READMEs (muzairkhattak/multimodal-prompt-learning 69bce21,
muzairkhattak/PromptSRC bb95c77, htyao89/KgCoOp c43ccc3); no repository lists the per-dataset
rows or the cross-dataset numbers, which were typed from the papers' tables and are only
checked for consistency (every HM is 2BN/(B+N), every average the mean of its 11 rows, to
rounding). Check a row against its paper before relying on a difference.
"""
from dataclasses import dataclass, field
from typing import Dict, Tuple

# The 11 datasets in the papers' column order (config stems).
_ORDER = ("average", "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
          "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
_XD_ORDER = _ORDER[1:]  # the source (ImageNet), then the 10 targets


@dataclass(frozen=True)
class Published:
    label: str  # as the paper names the method
    source: str  # paper and table the numbers come from
    base2new: Dict[str, Tuple[float, float, float]] = field(default_factory=dict)  # (base, new, HM)
    xd: Dict[str, float] = field(default_factory=dict)  # imagenet (source) and the 10 targets


PUBLISHED: Dict[str, Published] = {}


def rows(values, order=_ORDER):
    """{dataset: value} from values listed in the papers' order (average first)."""
    if len(values) != len(order):
        raise ValueError(f"expected {len(order)} values ({', '.join(order)}), got {len(values)}")
    return dict(zip(order, values))


def xd_rows(values):
    """Cross-dataset values in the papers' order: ImageNet (source), the 10 targets."""
    return rows(values, _XD_ORDER)


def register_published(trainer, published):
    PUBLISHED[trainer] = published
    return published
