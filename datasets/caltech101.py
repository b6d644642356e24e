"""Caltech101: ``caltech-101/101_ObjectCategories/<category>/image_NNNN.jpg``."""
from __future__ import annotations

from disakit.bundle import bundled_dataset

from .base import CoOpDataset
from .common import Split, read_and_split_data

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@bundled_dataset
class Caltech101(CoOpDataset):
    """100 object classes (the background and duplicate-face folders are ignored).

    Labels follow the case-sensitive sorted folder names, so the capitalised folders come
    first (0 ``face``, 1 ``leopard``, 2 ``motorbike``, 3 ``accordion``, ...).
    """

    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"

    def build_split(self) -> Split:
        return read_and_split_data(self.image_folder(), ignored=IGNORED, new_cnames=NEW_CNAMES)
