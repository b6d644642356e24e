"""EuroSAT (RGB): ``eurosat/2750/<Class>/<Class>_<n>.jpg``."""
from __future__ import annotations

from disakit.bundle import bundled_dataset

from .base import CoOpDataset
from .common import Split, read_and_split_data

NEW_CNAMES = {
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


@bundled_dataset
class EuroSAT(CoOpDataset):
    """10 land-use classes with descriptive names (``AnnualCrop`` → ``Annual Crop Land``).

    The names are stored in the split file; the renaming applies only when the split is
    rebuilt without it.
    """

    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_file = "split_zhou_EuroSAT.json"

    def build_split(self) -> Split:
        return read_and_split_data(self.image_folder(), new_cnames=NEW_CNAMES)
