"""EuroSAT (RGB): 10 land-use classes; folder names are expanded into prompt-friendly names."""
from dassl.data.datasets import DATASET_REGISTRY

from .base import SplitFileDataset


@DATASET_REGISTRY.register()
class EuroSAT(SplitFileDataset):
    dataset_dir = "eurosat"
    image_dir = "2750"
    split_file = "split_zhou_EuroSAT.json"
    new_cnames = {
        "AnnualCrop": "Annual Crop Land",
        "Forest": "Forest",
        "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road",
        "Industrial": "Industrial Buildings",
        "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land",
        "Residential": "Residential Buildings",
        "River": "River",
        "SeaLake": "Sea or Lake",
    }
