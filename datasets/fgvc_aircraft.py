"""FGVCAircraft: the ``data/`` folder of fgvc-aircraft-2013b, renamed ``fgvc_aircraft``."""
from __future__ import annotations

import os
from typing import Dict, List

from disakit.bundle import bundled_dataset
from disakit.dassl_api import Datum

from .base import CoOpDataset
from .common import Split, label_of, make_datum, read_text_lines


@bundled_dataset
class FGVCAircraft(CoOpDataset):
    """100 aircraft variants, read from the official variant-level lists (no split JSON).

    Class names = lines of ``variants.txt`` (label = line index); list lines are
    ``<image id> <variant name>`` where the name may contain spaces.
    """

    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    split_file = ""

    def build_split(self) -> Split:
        classnames = read_text_lines(self.raw_file("variants.txt"))
        cname2lab = {c: i for i, c in enumerate(classnames)}
        train, val, test = (
            self.read_data(cname2lab, f"images_variant_{split}.txt")
            for split in ("train", "val", "test")
        )
        return train, val, test

    def read_data(self, cname2lab: Dict[str, int], split_file: str) -> List[Datum]:
        """Items of one official list file."""
        path = self.raw_file(split_file)
        items = []
        for line in read_text_lines(path):
            image_id, _, classname = line.partition(" ")
            impath = os.path.join(self.image_dir, image_id + ".jpg")
            items.append(make_datum(impath, label_of(cname2lab, classname, path), 0, classname))
        return items
