"""StanfordCars: ``stanford_cars/cars_{train,test}/*.jpg`` + the devkit ``.mat`` files."""
from __future__ import annotations

import os
from typing import List

from disakit.bundle import bundled_dataset
from disakit.dassl_api import Datum

from .base import CoOpDataset
from .common import Split, make_datum, split_trainval


def year_first(meta_name: str) -> str:
    """``Tesla Model S Sedan 2012`` → ``2012 Tesla Model S Sedan``."""
    names = meta_name.split(" ")
    return " ".join([names[-1]] + names[:-1])


@bundled_dataset
class StanfordCars(CoOpDataset):
    """196 car models. Split paths are relative to the dataset folder (``cars_train/...``).

    Without the split JSON the devkit's ``.mat`` files are read (this needs ``scipy``).
    """

    dataset_dir = "stanford_cars"
    image_subdir = ""  # split paths start at the dataset folder
    split_file = "split_zhou_StanfordCars.json"

    def build_split(self) -> Split:
        meta_file = self.raw_file("devkit", "cars_meta.mat")
        trainval = self.read_data("cars_train", self.raw_file("devkit", "cars_train_annos.mat"),
                                  meta_file)
        test = self.read_data("cars_test", self.raw_file("cars_test_annos_withlabels.mat"),
                              meta_file)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, image_dir: str, anno_file: str, meta_file: str) -> List[Datum]:
        """Items of one annotation ``.mat``; label = annotation class − 1."""
        from scipy.io import loadmat

        annotations = loadmat(anno_file)["annotations"][0]
        class_names = loadmat(meta_file)["class_names"][0]
        items = []
        for anno in annotations:
            label = int(anno["class"][0, 0]) - 1
            impath = os.path.join(self.dataset_dir, image_dir, str(anno["fname"][0]))
            classname = year_first(str(class_names[label][0]))
            items.append(make_datum(impath, label, 0, classname))
        return items
