"""Food101: ``food-101/images/<class_name>/<id>.jpg``."""
from __future__ import annotations

from disakit.bundle import bundled_dataset

from .base import CoOpDataset
from .common import Split, read_and_split_data


@bundled_dataset
class Food101(CoOpDataset):
    """101 dishes; class name = folder name (``apple_pie``), label = sorted folder index.

    The CoOp split is a random 500/200/300 split per class, not the official 750/250 one.
    """

    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"

    def build_split(self) -> Split:
        return read_and_split_data(self.image_folder())
