"""OxfordPets: ``oxford_pets/images/<Breed_name>_<n>.jpg`` + ``annotations/*.txt``."""
from __future__ import annotations

import os
from typing import List

from disakit.bundle import bundled_dataset
from disakit.dassl_api import Datum

from .base import CoOpDataset
from .common import Split, make_datum, read_text_lines, split_trainval


def breed_name(imname: str) -> str:
    """``Abyssinian_122`` → ``abyssinian``: the name up to its last ``_``, lower-cased."""
    return "_".join(imname.split("_")[:-1]).lower()


@bundled_dataset
class OxfordPets(CoOpDataset):
    """37 cat and dog breeds; label = annotation class id − 1 (alphabetical breeds)."""

    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"

    def build_split(self) -> Split:
        trainval = self.read_data("trainval.txt")
        test = self.read_data("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, split_file: str) -> List[Datum]:
        """Items of ``annotations/<split_file>``: lines ``<image> <class id> <species> <breed>``."""
        items = []
        for line in read_text_lines(self.raw_file("annotations", split_file)):
            imname, label = line.split(" ")[:2]
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(make_datum(impath, int(label) - 1, 0, breed_name(imname)))
        return items
