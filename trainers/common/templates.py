"""Prompt templates: one per dataset (keyed by `DATASET.NAME`) and ImageNet's ensemble."""

DEFAULT_TEMPLATE = "a photo of a {}."

DATASET_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    "DemoShapes": "a drawing of a {}.",  # the demo's built-in benchmark (datasets/demo_shapes.py)
    "DemoLandUse": "a centered satellite photo of {}.",  # EuroSAT's template for EuroSAT-like names
}

# The 7 templates CLIP's authors selected from their 80 for ImageNet.
IMAGENET_TEMPLATES_SELECT = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)


def dataset_template(dataset_name):
    """The dataset's own template; generic datasets (e.g. ImageFolder) get "a photo of a {}."."""
    return DATASET_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)
