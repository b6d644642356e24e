"""DTD (registry name ``DescribableTextures``): ``dtd/images/<category>/<category>_NNNN.jpg``."""
from __future__ import annotations

from disakit.bundle import bundled_dataset

from .base import CoOpDataset
from .common import Split, read_and_split_data


@bundled_dataset
class DescribableTextures(CoOpDataset):
    """47 texture categories; class name = folder name, label = sorted folder index."""

    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"

    def build_split(self) -> Split:
        return read_and_split_data(self.image_folder())
