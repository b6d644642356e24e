"""Flowers102: ``oxford_flowers/jpg/image_NNNNN.jpg``, ``imagelabels.mat``, ``cat_to_name.json``."""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Dict, List

from disakit.bundle import bundled_dataset
from disakit.dassl_api import read_json

from .base import CoOpDataset
from .common import Split, concat_splits, split_by_fractions


@bundled_dataset
class OxfordFlowers(CoOpDataset):
    """102 flower categories; label = category id − 1 (dataset order, not alphabetical).

    Without the split JSON: a seeded 50/20/30 split per category, categories in their
    first-appearance order in ``imagelabels.mat`` (as upstream).
    """

    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"

    def build_split(self) -> Split:
        from scipy.io import loadmat

        labels = loadmat(self.raw_file("imagelabels.mat"))["labels"][0]
        lab2cname = read_json(self.raw_file("cat_to_name.json"))
        tracker: Dict[int, List[str]] = defaultdict(list)
        for i, label in enumerate(labels):
            tracker[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))
        print("Splitting data into 50% train, 20% val, and 30% test")
        return concat_splits(
            split_by_fractions(paths, label - 1, lab2cname[str(label)], 0.5, 0.2,
                               f"{self.name} category {label}")
            for label, paths in tracker.items()
        )
