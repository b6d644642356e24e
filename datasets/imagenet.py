"""ImageNet (ILSVRC-2012): ``imagenet/images/{train,val}/<wnid>/*.JPEG`` + ``classnames.txt``."""
from __future__ import annotations

import os
from typing import Dict, List

from disakit.bundle import bundled_dataset
from disakit.dassl_api import Datum

from .base import CoOpDataset, folder_items
from .cache import load_or_build_preprocessed
from .common import FullSplit, bulk_build, read_classnames, require_path


@bundled_dataset
class ImageNet(CoOpDataset):
    """ImageNet with the official val set as test (and as val: val = test).

    There is no split JSON: the first construction lists ``images/train`` and ``images/val``
    (sorted file names) and caches the lists in ``preprocessed.json``; later runs load that
    file without touching the images (an upstream ``preprocessed.pkl`` is read if present).
    Label = sorted wnid index; class name = the wnid's entry in ``classnames.txt``.
    """

    dataset_dir = "imagenet"
    image_subdir = "images"
    read_classnames = staticmethod(read_classnames)

    def load_full_split(self) -> FullSplit:
        data = load_or_build_preprocessed(self.cache, self._scan)
        return data["train"], None, data["test"]

    def _scan(self) -> Dict[str, List[Datum]]:
        classnames = read_classnames(self.raw_file("classnames.txt"))
        train_folders = self._wnid_folders("train")
        val_folders = self._wnid_folders("val")
        if val_folders != train_folders:
            raise ValueError(
                f"ImageNet: {self.image_dir}/val must hold the same {len(train_folders)} wnid "
                f"folders as {self.image_dir}/train (found {len(val_folders)}). Fix: sort the "
                f"validation images into <wnid>/ folders (see DATASETS.md, 'ImageNet')."
            )
        return {"train": self.read_data(classnames, "train", train_folders),
                "test": self.read_data(classnames, "val", val_folders)}

    def _wnid_folders(self, split_dir: str) -> List[str]:
        path = require_path(os.path.join(self.image_dir, split_dir), self.name, "image folder")
        return sorted(e.name for e in os.scandir(path) if e.is_dir())

    def read_data(
        self, classnames: Dict[str, str], split_dir: str, folders: List[str]
    ) -> List[Datum]:
        """All images of ``images/<split_dir>``; label = position of the wnid folder."""
        items: List[Datum] = []
        with bulk_build():
            for label, folder in enumerate(folders):
                if folder not in classnames:
                    raise KeyError(f"ImageNet: wnid {folder} is missing from classnames.txt")
                path = os.path.join(self.image_dir, split_dir, folder)
                items.extend(folder_items(path, label, classnames[folder]))
        return items
