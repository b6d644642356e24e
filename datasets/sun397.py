"""SUN397: ``sun397/SUN397/<letter>/<category>[/<sub>]/sun_*.jpg`` + the Partitions files."""
from __future__ import annotations

import os
from typing import Dict, List

from disakit.bundle import bundled_dataset
from disakit.dassl_api import Datum

from .base import CoOpDataset
from .common import Split, label_of, make_datum, read_text_lines, split_trainval


def scene_name(category: str) -> str:
    """``b/bakery/shop`` → ``shop bakery``: drop the letter, reverse the parts, join by spaces."""
    return " ".join(category.split("/")[1:][::-1])


@bundled_dataset
class SUN397(CoOpDataset):
    """397 scene categories; label = line index in ``ClassName.txt`` (``/a/abbey``, ...).

    Without the split JSON: ``Training_01``/``Testing_01``, then an 80/20 train/val split.
    """

    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"

    def build_split(self) -> Split:
        classnames = [line[1:] for line in read_text_lines(self.raw_file("ClassName.txt"))]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: Dict[str, int], text_file: str) -> List[Datum]:
        """Items of one partition file (lines ``/a/abbey/sun_xxx.jpg``)."""
        path = self.raw_file(text_file)
        items = []
        for line in read_text_lines(path):
            imname = line[1:]
            category = os.path.dirname(imname)
            label = label_of(cname2lab, category, path)
            items.append(make_datum(os.path.join(self.image_dir, imname), label, 0,
                                    scene_name(category)))
        return items
