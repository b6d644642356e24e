"""Reader templates: the CoOp dataset pattern and the test-only ImageNet variants.

Why templates: the eleven upstream training readers repeat the same 40-line constructor
(paths, split file or rebuild, few-shot cache, base/new subsampling); here it is written once
(docs/engine.md) and each reader declares its folders and, where the split JSON may be
absent, how to build the split from the raw annotations.

The helpers are also exposed as static methods under their upstream names
(``OxfordPets.read_split``, ``DTD.read_and_split_data``, ``OxfordPets.subsample_classes``, ...)
so code written against the CoOp repositories keeps working.
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple, cast

from disakit.dassl_api import DatasetBase, Datum

from . import common
from .cache import FewShotCache
from .common import (
    FullSplit,
    Split,
    bulk_build,
    check_images_exist,
    dataset_root,
    make_datum,
    read_classnames,
    require_path,
    subsample_classes,
    subsample_setting,
)
from .store import DatasetCache

__all__ = ["CoOpDataset", "ImageNetVariant", "dataset_cache", "folder_items",
           "FEWSHOT_VAL_MAX_SHOTS"]

FEWSHOT_VAL_MAX_SHOTS = 4  # few-shot val sets hold min(K, 4) images per class (upstream)


class CoOpDataset(DatasetBase):
    """Template for a training dataset of the CoOp suite.

    Subclasses set ``dataset_dir`` (folder under ``DATASET.ROOT``), ``image_subdir`` (the
    folder the split file's paths start from; empty for StanfordCars, whose split paths start
    at the dataset folder) and ``split_file`` (empty when the dataset has no split JSON), and
    implement :meth:`build_split` when the split can be rebuilt from raw annotations. The
    constructor:

    1. checks the dataset folder; ``cache`` (:class:`~datasets.store.DatasetCache`) is where its
       derived files live, and ``split_fewshot/`` is created (best effort, as upstream);
    2. reads the split JSON (checking every image in bulk) or builds and saves it;
    3. draws or loads the few-shot subsets (``NUM_SHOTS``, ``SEED``);
    4. keeps base or new classes (``SUBSAMPLE_CLASSES``).
    """

    dataset_dir = ""
    image_subdir = ""
    split_file = ""
    cache: DatasetCache
    # Tests set this to False to parse real split files without their images.
    check_images = True

    read_split = staticmethod(common.read_split)
    save_split = staticmethod(common.save_split)
    split_trainval = staticmethod(common.split_trainval)
    read_and_split_data = staticmethod(common.read_and_split_data)
    subsample_classes = staticmethod(common.subsample_classes)

    def __init__(self, cfg) -> None:
        self._set_paths(dataset_root(cfg))
        train, val, test = self.load_full_split()
        train, val = self.few_shot(train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED)
        train, val, test = self._subsample(train, val, test, subsample_setting(cfg))
        super().__init__(train_x=train, val=val, test=test)

    # -- paths ----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Registry name, used in messages."""
        return type(self).__name__

    def locate(self, root: str) -> str:
        """The dataset folder (must exist): ``root/<dataset_dir>``; ImageFolder reads it from
        the config instead."""
        return require_path(os.path.join(root, type(self).dataset_dir), self.name)

    def _set_paths(self, root: str) -> None:
        self.dataset_dir = self.locate(root)
        self.image_dir = (
            os.path.join(self.dataset_dir, self.image_subdir) if self.image_subdir
            else self.dataset_dir
        )
        self.split_path = (
            os.path.join(self.dataset_dir, self.split_file) if self.split_file else ""
        )
        self.cache = DatasetCache(self.dataset_dir)
        # Upstream's attribute name; a read-only data mount leaves it uncreated (caches are
        # then skipped with one line each, the run works).
        self.split_fewshot_dir = self.cache.fewshot_dir
        self.cache.create_fewshot_dir()

    def image_folder(self) -> str:
        """``image_dir``, which must exist (used before listing it)."""
        return require_path(self.image_dir, self.name, what="image folder")

    def raw_file(self, *parts: str) -> str:
        """Path of a raw annotation file inside the dataset folder; must exist."""
        path = os.path.join(self.dataset_dir, *parts)
        return require_path(path, self.name, what="annotation file")

    # -- steps ----------------------------------------------------------------------------------

    def load_full_split(self) -> FullSplit:
        """The full train/val/test lists: from the split JSON, else rebuilt and saved."""
        if self.split_path and os.path.exists(self.split_path):
            return common.read_split(self.split_path, self.image_dir, self.check_images, self.name)
        train, val, test = self.build_split()
        if self.check_images:
            source = f"the {self.name} annotation files in {self.dataset_dir}"
            check_images_exist((*train, *(val or ()), *test), source, self.image_dir, self.name)
        if self.split_path:
            common.save_split(train, val, test, self.split_path, self.image_dir,
                              generated=f"built by the toolkit from {self.dataset_dir}")
            print(f"Warning: the official split file {os.path.basename(self.split_path)} was not "
                  f"found, so a random split was generated and saved to {self.split_path}; "
                  "results are NOT comparable with published numbers (CoOp's split files: "
                  f"see {common.DATASETS_DOC})")
        return train, val, test

    def build_split(self) -> Split:
        """Build the split from raw annotations (only called when the split JSON is absent).

        A dataset without a val list (ImageNet) overrides :meth:`load_full_split` instead,
        which may return ``(train, None, test)``.
        """
        raise FileNotFoundError(
            f"{self.name}: split file not found: {self.split_path}. Fix: download it as "
            f"described in {common.DATASETS_DOC}."
        )

    def few_shot(
        self, train: List[Datum], val: Optional[List[Datum]], num_shots: int, seed: int
    ) -> Tuple[List[Datum], Optional[List[Datum]]]:
        """K-shot train and ``min(K, 4)``-shot val, through the few-shot cache (docs/engine.md)."""
        if num_shots < 1:
            print(f"NUM_SHOTS is {num_shots} (< 1): the whole training set is used "
                  f"({len(train)} images)")
            return train, val
        cache = FewShotCache(self.cache, num_shots, seed)
        data = cache.load()
        if data is None:
            data = {"train": self._draw(train, num_shots)}
            if val is not None:
                data["val"] = self._draw(val, min(num_shots, FEWSHOT_VAL_MAX_SHOTS))
            cache.save(data)
        common.warn_short_classes(data["train"], num_shots)
        return data["train"], data.get("val", val)

    def _draw(self, items: List[Datum], num_shots: int) -> List[Datum]:
        """The engine's K-shot draw of one list (``num_shots >= 1``), which for a single source
        is a list of ``Datum`` on either engine (its declared type covers several sources)."""
        return cast(List[Datum], self.generate_fewshot_dataset(items, num_shots=num_shots))

    def _subsample(self, train, val, test, subsample: str) -> Split:
        """Base/new subsampling; without a val list (ImageNet) val is the test list."""
        if val is None:
            train, test = subsample_classes(train, test, subsample=subsample)
            return train, test, test
        return tuple(subsample_classes(train, val, test, subsample=subsample))


class ImageNetVariant(DatasetBase):
    """Template for the test-only ImageNet variants (V2, Sketch, A, R).

    ``train_x = test =`` every image; no val, no caches; ``NUM_SHOTS`` and
    ``SUBSAMPLE_CLASSES`` are ignored. Class names come from the dataset folder's
    ``classnames.txt`` (a copy of ImageNet's). Labels follow :meth:`label_folders`.
    File names are sorted (upstream used the filesystem's order).
    """

    dataset_dir = ""
    image_subdir = ""
    cache: DatasetCache

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        folder = os.path.join(dataset_root(cfg), type(self).dataset_dir)
        self.dataset_dir = require_path(folder, name)
        self.cache = DatasetCache.absent(f"{name} is a test-only dataset, without few-shot draws "
                                         "or a split_fewshot/ folder")
        self.image_dir = require_path(os.path.join(self.dataset_dir, self.image_subdir), name,
                                      what="image folder")
        text_file = require_path(os.path.join(self.dataset_dir, "classnames.txt"), name,
                                 what="classnames.txt (copy it from imagenet/)")
        data = self.read_data(read_classnames(text_file))
        super().__init__(train_x=data, test=data)

    def label_folders(self, classnames: Dict[str, str]) -> List[Tuple[str, str]]:
        """``[(folder under image_dir, wnid)]`` in label order: sorted wnid folders.

        ImageNetV2 overrides this (its folders are named ``0..999``).
        """
        return [(folder, folder) for folder in self.sorted_subfolders()]

    def sorted_subfolders(self) -> List[str]:
        """Sorted sub-folders of ``image_dir`` (files such as README.txt are skipped)."""
        return sorted(e.name for e in os.scandir(self.image_dir)
                      if e.is_dir() and not e.name.startswith("."))

    def read_data(self, classnames: Dict[str, str]) -> List[Datum]:
        """Every image of every label folder, labelled by folder position."""
        items: List[Datum] = []
        with bulk_build():
            for label, (folder, wnid) in enumerate(self.label_folders(classnames)):
                classname = self._classname(classnames, wnid, folder)
                path = require_path(os.path.join(self.image_dir, folder), type(self).__name__,
                                    what="class folder")
                items.extend(folder_items(path, label, classname))
        return items

    def _classname(self, classnames: Dict[str, str], wnid: str, folder: str) -> str:
        if wnid not in classnames:
            raise KeyError(
                f"{type(self).__name__}: folder {os.path.join(self.image_dir, folder)} has no "
                f"entry '{wnid}' in {self.dataset_dir}/classnames.txt; copy the complete "
                f"imagenet/classnames.txt there."
            )
        return classnames[wnid]


def dataset_cache(dataset: object) -> DatasetCache:
    """Where a built dataset's derived files live (class prototypes are cached there).

    A reader on this module's templates declares its store (``cache``: the dataset folder, or
    absent for the test-only variants); any other reader -- a CoOp checkout's own, in plugin
    mode -- has none, said explicitly rather than guessed from its attributes.
    """
    if isinstance(dataset, (CoOpDataset, ImageNetVariant)):
        return dataset.cache
    return DatasetCache.absent(f"{type(dataset).__name__} is not one of this toolkit's dataset "
                               "readers, whose derived files have a known folder")


def folder_items(folder: str, label: int, classname: str) -> List[Datum]:
    """``Datum``s for the sorted, non-hidden files of ``folder``, without per-file stats."""
    names = sorted(e.name for e in os.scandir(folder)
                   if not e.name.startswith(".") and not e.is_dir())
    prefix = os.path.join(folder, "")
    return [make_datum(prefix + name, label, 0, classname) for name in names]
