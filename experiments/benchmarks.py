"""The benchmark datasets, named by their config stem (`configs/datasets/<stem>.yaml`, also their
output folder), and the standard grid of shots and seeds."""

# The 11 few-shot benchmarks, in the order the papers' tables use.
BENCHMARKS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
              "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")

# Domain generalisation: train on the source, evaluate the same model on the targets.
DG_SOURCE = "imagenet"
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")

DISPLAY_NAMES = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "ImageNet-V2", "imagenet_sketch": "ImageNet-Sketch",
    "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R",
}

SHOTS = (1, 2, 4, 8, 16)
SEEDS = (1, 2, 3)


def display_name(dataset):
    """Paper-style name of a dataset stem; unknown (custom) datasets keep their stem."""
    return DISPLAY_NAMES.get(dataset, dataset)
