"""Published ViT-B/16 results of the base-to-new protocol (16 shots, base half of the classes,
seeds 1-3 averaged) and of cross-dataset transfer (trained on ImageNet, all classes, 16 shots),
keyed by our trainer name; the tables print them beside our runs.

A method file registers its own numbers next to its trainer (`register_published`). The numbers
of MaPLe and PromptSRC, whose method files live on another branch, are registered here; a
later registration under the same trainer replaces them. Datasets are config stems; every
series also has "average" (the papers' 11-dataset mean, whose HM is the HM of the averaged
base and new accuracies).

Caution: these numbers were typed in from the papers' tables as remembered, not checked against
the PDFs here; check a row against its source before relying on a difference.
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


register_published("MaPLe", Published(
    "MaPLe", "Khattak et al., MaPLe: Multi-modal Prompt Learning, CVPR 2023, Tables 1 and 2",
    base2new=rows([(82.28, 75.14, 78.55), (76.66, 70.54, 73.47), (97.74, 94.36, 96.02),
                   (95.43, 97.76, 96.58), (72.94, 74.00, 73.47), (95.92, 72.46, 82.56),
                   (90.71, 92.05, 91.38), (37.44, 35.61, 36.50), (80.82, 78.70, 79.75),
                   (80.36, 59.18, 68.16), (94.07, 73.23, 82.35), (83.00, 78.66, 80.77)]),
    xd=xd_rows([70.72, 93.53, 90.49, 65.57, 72.23, 86.20, 24.74, 67.01, 46.49, 48.06, 68.69])))

register_published("PromptSRC", Published(
    "PromptSRC", "Khattak et al., Self-regulating Prompts (PromptSRC), ICCV 2023, Tables 1 and 2",
    base2new=rows([(84.26, 76.10, 79.97), (77.60, 70.73, 74.01), (98.10, 94.03, 96.02),
                   (95.33, 97.30, 96.30), (78.27, 74.97, 76.58), (98.07, 76.50, 85.95),
                   (90.67, 91.53, 91.10), (42.73, 37.87, 40.15), (82.67, 78.47, 80.52),
                   (83.37, 62.97, 71.75), (92.90, 73.90, 82.32), (87.10, 78.80, 82.74)]),
    xd=xd_rows([71.27, 93.60, 90.25, 65.70, 70.25, 86.15, 23.90, 67.10, 46.87, 45.50, 68.75])))
