"""Published RN50 accuracies (%), dashed references in the plots: shots 0 is zero-shot; datasets
are config stems, plus "average" for the mean over the 11 benchmarks."""
from collections import namedtuple

VERIFIED = "per-dataset results log published with Tip-Adapter (verified)"
APPROXIMATE_TASKRES = ("TaskRes, reported; approximate (ImageNet 64.75 to 65.41 depending on "
                       "the source)")
# trainer: ours of that method, if any (plots share its colour); points: {shots: accuracy}.
PublishedSeries = namedtuple("PublishedSeries", "method trainer dataset points source")

# Zero-shot CLIP with each dataset's single template (our ZeroshotCLIP).
_ZERO_SHOT = {
    "sun397": 58.52, "oxford_pets": 85.83, "eurosat": 37.52, "caltech101": 85.92, "dtd": 42.20,
    "fgvc_aircraft": 17.10, "food101": 77.32, "oxford_flowers": 66.02, "ucf101": 61.35,
    "stanford_cars": 55.74,
}

PUBLISHED = (
    *(PublishedSeries("Zero-shot CLIP", "ZeroshotCLIP", d, {0: v}, VERIFIED)
      for d, v in _ZERO_SHOT.items()),
    PublishedSeries("Zero-shot CLIP", "ZeroshotCLIP", "imagenet", {0: 58.18}, VERIFIED),
    PublishedSeries("Zero-shot CLIP, 7-template ensemble", "ZeroshotCLIP2", "imagenet",
                    {0: 60.32}, VERIFIED),
    # The average uses the ensemble for ImageNet and single templates elsewhere.
    PublishedSeries("Zero-shot CLIP", "ZeroshotCLIP", "average", {0: 58.89}, VERIFIED),
    PublishedSeries("CLIP-Adapter", "CLIP_Adapter", "average",
                    {1: 62.67, 2: 65.55, 4: 68.61, 8: 71.40, 16: 74.44}, VERIFIED),
    PublishedSeries("Tip-Adapter-F", None, "average",
                    {1: 64.60, 2: 66.65, 4: 69.67, 8: 72.45, 16: 75.83}, VERIFIED),
    PublishedSeries("CoOp", "CoOp", "imagenet",
                    {1: 57.15, 2: 57.81, 4: 59.99, 8: 61.56, 16: 62.95}, VERIFIED),
    PublishedSeries("TaskRes", "TaskRes", "average", {16: 75.8}, APPROXIMATE_TASKRES),
    PublishedSeries("TaskRes", "TaskRes", "imagenet", {16: 64.75}, APPROXIMATE_TASKRES),
)


def published_for(dataset):
    """The published series of one dataset stem (or "average")."""
    return [s for s in PUBLISHED if s.dataset == dataset]
