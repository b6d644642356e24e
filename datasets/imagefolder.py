"""ImageFolder: your own data, one sub-folder per class, usable from any trainer with no code.

A dataset YAML names the reader and the folder (DATASETS.md, "Bring your own dataset")::

    DATASET:
      NAME: "ImageFolder"
      DIR: "my_dataset"          # under DATASET.ROOT (--root, $DATA), or an absolute path

Layout of ``<ROOT>/<DIR>``:

* ``<class folder>/<image>``: one folder per class; label = index of the folder in sorted
  order; images are the image files directly in it (by extension; sorted names);
* ``classnames.txt`` (optional): lines ``<folder> <readable class name>`` (or tab-separated,
  for folder names with spaces); folders it does not name keep their folder name.

The train/val/test split, the first that applies:

1. ``DATASET.SPLIT_FILE``: a CoOp split JSON (``{"train"|"val"|"test": [[relpath, label,
   classname], ...]}``, paths relative to the dataset folder), read as the benchmarks' files;
2. ``train/`` plus ``test/`` and/or ``val/`` sub-folders, each holding the class folders (the
   classes are those of ``train/``); with only one of ``test/``/``val/``, it serves as both
   (as ImageNet's val set does);
3. otherwise a seeded, stratified split (``DATASET.SPLIT_FRACTIONS`` of each class for train and
   val, the rest for test; ``DATASET.SPLIT_SEED``), written next to the data as
   ``split_disakit_<folder name>.json`` and reused by every later run. It is drawn from its own
   random generator, so it is the same for every run seed and does not change the run's
   few-shot draws.

Few-shot sampling (and its ``split_fewshot/`` cache) and base/new subsampling are the benchmark
readers' (:class:`datasets.base.CoOpDataset`), unchanged.
"""
from __future__ import annotations

import os
import random
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from disakit.bundle import bundled_dataset
from disakit.dassl_api import Datum, read_json

from . import common
from .base import CoOpDataset
from .cache import FewShotCache, StaleCacheError
from .common import (
    FullSplit,
    Split,
    bulk_build,
    concat_splits,
    make_datum,
    split_by_fractions,
)
from .store import FEWSHOT_DIR, fewshot_dir

__all__ = [
    "ImageFolder", "ImageFolderSettings", "ImageFolderSource", "IMAGE_EXTENSIONS",
    "CLASSNAMES_FILE", "SUBSETS", "is_image_file", "class_folders", "image_files",
    "read_class_names", "subset_folders",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
CLASSNAMES_FILE = "classnames.txt"
SUBSETS = ("train", "val", "test")
SPLIT_PREFIX = "split_disakit_"
META_KEY = "disakit"  # how a generated split was made (readers ignore unknown keys)
# Folders that are never classes: the few-shot cache and the macOS zip residue.
NOT_CLASSES = frozenset({FEWSHOT_DIR, "__MACOSX"})
DOC = f"{common.DATASETS_DOC}, section 'Bring your own dataset'"


# ---------------------------------------------------------------------------------------------
# Folder listing (shared with datasets.check)
# ---------------------------------------------------------------------------------------------


def is_image_file(name: str) -> bool:
    """Whether ``name`` has an image extension (torchvision's ImageFolder list, any case)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def class_folders(folder: str) -> List[str]:
    """Sorted sub-folders of ``folder`` that are classes (not hidden, not :data:`NOT_CLASSES`)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if not e.name.startswith(".") and e.name not in NOT_CLASSES and e.is_dir())


def image_files(folder: str) -> List[str]:
    """Sorted names of the image files directly in ``folder`` (sub-folders are not searched)."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries
                      if not e.name.startswith(".") and is_image_file(e.name) and e.is_file())


def read_class_names(path: str) -> Dict[str, str]:
    """``classnames.txt`` -> ``{folder: readable name}``; a line is ``<folder> <name>``, or
    ``<folder><TAB><name>`` when folder names contain spaces; ``#`` lines are comments."""
    names: Dict[str, str] = {}
    for line in common.read_text_lines(path):
        folder, _, name = line.partition("\t" if "\t" in line else " ")
        names[folder.strip()] = name.strip() or folder.strip()
    return names


def subset_folders(dataset_dir: str) -> Dict[str, str]:
    """``{subset: path}`` of the ``train/ val/ test/`` folders when the data is split by folders.

    Only a ``train/`` that holds class folders counts (a class *named* ``train`` holds images).
    ``{}`` when the layout is plain class folders.
    """
    train = os.path.join(dataset_dir, "train")
    if not os.path.isdir(train) or not class_folders(train):
        return {}
    return {s: os.path.join(dataset_dir, s) for s in SUBSETS
            if os.path.isdir(os.path.join(dataset_dir, s))}


@contextmanager
def isolated_random(seed: int) -> Iterator[None]:
    """Seed Python's ``random`` for a block and restore its state afterwards.

    Why: the split helpers of :mod:`datasets.common` draw from the global ``random`` (as Dassl
    does); a generated split must neither depend on the run's seed nor consume draws that the
    run's few-shot sampling would otherwise get.
    """
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


# ---------------------------------------------------------------------------------------------
# Settings and split sources
# ---------------------------------------------------------------------------------------------


def _dataset_keys(cfg) -> dict:
    """The reader's ``DATASET.*`` keys, with their declared defaults when a config lacks them."""
    from disakit.trainers.config import DATASET_KEYS

    return {key: cfg.DATASET.get(key, default) for key, default in DATASET_KEYS.items()}


def _fractions(value) -> Tuple[float, float]:
    try:
        p_trn, p_val = (float(v) for v in value)
    except (TypeError, ValueError):
        p_trn = p_val = -1.0
    if not (p_trn > 0 and p_val > 0 and p_trn + p_val < 1):
        raise ValueError(
            f"DATASET.SPLIT_FRACTIONS must be the train and val shares, both > 0 with a sum "
            f"below 1 (the rest is test), e.g. [0.5, 0.2]; got {value!r}")
    return p_trn, p_val


class ImageFolderSettings:
    """Where the data is and how to split it, from ``DATASET.ROOT/DIR/SPLIT_*``."""

    def __init__(self, dataset_dir: str, split_file: str = "",
                 fractions: Sequence[float] = (0.5, 0.2), seed: int = 1) -> None:
        self.dataset_dir = os.path.abspath(dataset_dir)
        self.split_file = (os.path.join(self.dataset_dir, os.path.expanduser(split_file))
                           if split_file else "")
        self.fractions = _fractions(fractions)
        self.seed = int(seed)

    @classmethod
    def from_cfg(cls, cfg) -> "ImageFolderSettings":
        keys = _dataset_keys(cfg)
        if not keys["DIR"]:
            raise ValueError(
                "ImageFolder: DATASET.DIR is empty. Fix: set it in your dataset YAML to the "
                "folder (under DATASET.ROOT, or absolute) that holds one sub-folder per class, "
                f"e.g. 'DATASET:' then '  DIR: \"my_dataset\"' (see {DOC})")
        folder = os.path.join(common.dataset_root(cfg), os.path.expanduser(str(keys["DIR"])))
        return cls(folder, str(keys["SPLIT_FILE"]), keys["SPLIT_FRACTIONS"], keys["SPLIT_SEED"])

    @property
    def name(self) -> str:
        """The dataset folder's name (used in messages and the generated split's file name)."""
        return os.path.basename(self.dataset_dir.rstrip(os.sep)) or "data"

    @property
    def generated_split_path(self) -> str:
        return os.path.join(self.dataset_dir, f"{SPLIT_PREFIX}{self.name}.json")

    @property
    def classnames_path(self) -> str:
        return os.path.join(self.dataset_dir, CLASSNAMES_FILE)

    def describe_fractions(self) -> str:
        p_trn, p_val = self.fractions
        return (f"{p_trn:.0%} train / {p_val:.0%} val / {1 - p_trn - p_val:.0%} test per class, "
                f"DATASET.SPLIT_SEED {self.seed}")


class ImageFolderSource:
    """Builds the full train/val/test lists of an ImageFolder dataset (module docstring).

    Used by the reader (``load``) and, without writing anything, by ``check-data``
    (:mod:`datasets.check`), so both see the same classes, images and errors.
    """

    def __init__(self, settings: ImageFolderSettings, label: str = "") -> None:
        self.settings = settings
        self.dataset_dir = settings.dataset_dir
        self.label = label or f"ImageFolder '{settings.name}'"

    # -- which split ----------------------------------------------------------------------------

    def layout(self) -> str:
        """``"split file"``, ``"folders"`` (train/ val/ test/) or ``"generated"``."""
        if self.settings.split_file:
            return "split file"
        return "folders" if subset_folders(self.dataset_dir) else "generated"

    def split_path(self) -> str:
        """The split JSON this layout reads ('' for train/ val/ test/ folders)."""
        layout = self.layout()
        if layout == "split file":
            return self.settings.split_file
        return self.settings.generated_split_path if layout == "generated" else ""

    def class_names(self) -> Dict[str, str]:
        """``classnames.txt`` as ``{folder: name}``; ``{}`` without the file."""
        path = self.settings.classnames_path
        return read_class_names(path) if os.path.isfile(path) else {}

    def classes(self, folder: Optional[str] = None) -> List[str]:
        """Class folders of ``folder`` (default: the dataset folder); at least one, else a
        ``FileNotFoundError`` that says what the folder holds instead."""
        folder = folder or self.dataset_dir
        found = class_folders(folder)
        if not found:
            images = len(image_files(folder))
            what = (f"{images} image(s) lie directly in it" if images
                    else "it holds no sub-folders")
            raise FileNotFoundError(
                f"{self.label}: no class folders in {folder} ({what}). Fix: put each class's "
                f"images in a sub-folder named after the class, e.g. {folder}/<class>/<image> "
                f"(see {DOC})")
        return found

    # -- the three sources ----------------------------------------------------------------------

    def load(self, check_images: bool = True, save: bool = True) -> FullSplit:
        """The full split (``val`` is None when one folder serves as val and test).

        ``save=False`` never writes (``check-data``); the reader saves a generated split.
        """
        layout = self.layout()
        if layout == "split file":
            path = self.settings.split_file
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{self.label}: split file not found: {path} (DATASET.SPLIT_FILE, relative "
                    f"to the dataset folder {self.dataset_dir}). Fix: correct DATASET.SPLIT_FILE, "
                    "or set it to \"\" to use train/ val/ test/ folders or a generated split "
                    f"(see {DOC})")
            return common.read_split(path, self.dataset_dir, check_images, self.label)
        if layout == "folders":
            return self.read_folders()
        path = self.settings.generated_split_path
        if os.path.exists(path):
            self.check_generated(path)
            return common.read_split(path, self.dataset_dir, check_images, self.label)
        split = self.build_split()
        if save:
            self.save_generated(split, path)
        return split

    def read_folders(self) -> FullSplit:
        """``train/`` plus ``val/`` and/or ``test/``, each with the class folders of ``train/``."""
        subsets = subset_folders(self.dataset_dir)
        if len(subsets) < 2:
            raise FileNotFoundError(
                f"{self.label}: {subsets['train']} has class folders but there is no test/ or "
                f"val/ folder next to it. Fix: add {self.dataset_dir}/test/<class>/..., or put "
                f"the class folders directly in {self.dataset_dir} to have a split generated")
        classes = self.classes(subsets["train"])
        labels = {folder: label for label, folder in enumerate(classes)}
        names = self.class_names()
        lists: Dict[str, List[Datum]] = {}
        with bulk_build():
            for subset, path in subsets.items():
                items: List[Datum] = []
                for folder in class_folders(path):
                    if folder not in labels:
                        raise ValueError(
                            f"{self.label}: {os.path.join(path, folder)} is not a class of "
                            f"{subsets['train']} (its classes: {', '.join(classes[:8])}"
                            f"{', ...' if len(classes) > 8 else ''}). Fix: rename or remove it, "
                            "or add the class to train/")
                    prefix = os.path.join(path, folder, "")
                    items.extend(make_datum(prefix + name, labels[folder], 0,
                                            names.get(folder, folder))
                                 for name in image_files(os.path.join(path, folder)))
                lists[subset] = items
        empty = [c for c in classes if not any(i.label == labels[c] for i in lists["train"])]
        if empty:
            raise ValueError(
                f"{self.label}: class folder(s) with no images in {subsets['train']}: "
                f"{', '.join(empty[:5])}{' ...' if len(empty) > 5 else ''}. Fix: add images or "
                "remove the folder(s)")
        if "test" not in lists:
            print(f"{self.label}: no test/ folder: val/ serves as the test set (and as val)")
            return lists["train"], None, lists["val"]
        if "val" not in lists:
            print(f"{self.label}: no val/ folder: the test set serves as val (as for ImageNet)")
        return lists["train"], lists.get("val"), lists["test"]

    def build_split(self) -> Split:
        """The seeded, stratified split of the class folders (nothing is written)."""
        classes = self.classes()
        names = self.class_names()
        p_trn, p_val = self.settings.fractions

        def _class_split(label: int, folder: str) -> Split:
            path = os.path.join(self.dataset_dir, folder)
            images = [os.path.join(path, name) for name in image_files(path)]
            try:
                return split_by_fractions(images, label, names.get(folder, folder), p_trn,
                                          p_val, path)
            except ValueError as exc:
                raise ValueError(
                    f"{self.label}: {exc} (DATASET.SPLIT_FRACTIONS {p_trn}, {p_val}). Fix: add "
                    f"images, remove the class folder, or give a fixed split (train/ val/ test/ "
                    f"folders or DATASET.SPLIT_FILE; see {DOC})") from None

        with isolated_random(self.settings.seed), bulk_build():
            return concat_splits([_class_split(label, folder)
                                  for label, folder in enumerate(classes)])

    # -- the generated split file ---------------------------------------------------------------

    def meta(self) -> dict:
        """What a generated split file records about how it was made."""
        return {"layout": "class folders", "fractions": list(self.settings.fractions),
                "seed": self.settings.seed, "classes": self.classes()}

    def save_generated(self, split: Split, path: str) -> None:
        try:
            common.save_split(*split, path, self.dataset_dir, extra={META_KEY: self.meta()})
        except OSError as exc:  # a read-only data folder: the same split is made every run
            print(f"Note: could not write {path} ({exc}); the split is made again each run")
            return
        train, val, test = split
        print(f"{self.label}: no split file and no train/ val/ test/ folders in "
              f"{self.dataset_dir}, so a seeded, stratified split was made "
              f"({self.settings.describe_fractions()}: {len(train)} / {len(val)} / {len(test)} "
              f"images of {len(self.classes())} classes) and saved to {path}; later runs "
              "reuse it (delete it to split again)")

    def check_generated(self, path: str) -> None:
        """Refuse a generated split made with other settings or for other class folders."""
        try:
            data = read_json(path)
        except ValueError:
            return  # not JSON: read_split names the file and the fix
        meta = data.get(META_KEY) if isinstance(data, dict) else None
        if not isinstance(meta, dict):
            return  # a split file written by hand under that name: used as it is
        fix = f"Fix: delete {path} and {fewshot_dir(self.dataset_dir)} to split again"
        made = (tuple(meta.get("fractions", ())), meta.get("seed"))
        if made != (self.settings.fractions, self.settings.seed):
            raise ValueError(
                f"{self.label}: {path} was made with DATASET.SPLIT_FRACTIONS {list(made[0])} and "
                f"SPLIT_SEED {made[1]}, but this run asks for {list(self.settings.fractions)} and "
                f"{self.settings.seed}. {fix}, or set the keys back")
        recorded, present = meta.get("classes"), self.classes()
        if isinstance(recorded, list) and recorded != present:
            added = sorted(set(present) - set(recorded))
            removed = sorted(set(recorded) - set(present))
            raise ValueError(
                f"{self.label}: the class folders changed since {path} was made (added: "
                f"{added or 'none'}; removed: {removed or 'none'}). {fix}")


# ---------------------------------------------------------------------------------------------
# The reader
# ---------------------------------------------------------------------------------------------


@bundled_dataset
class ImageFolder(CoOpDataset):
    """Your own data as class folders (module docstring; DATASETS.md, "Bring your own dataset").

    Everything after the full split -- few-shot draws and their cache in
    ``<DIR>/split_fewshot/``, base/new subsampling, the clear errors for missing images -- is
    :class:`~datasets.base.CoOpDataset`'s, exactly as for the benchmarks.
    """

    def __init__(self, cfg) -> None:
        self.settings = ImageFolderSettings.from_cfg(cfg)
        self.source = ImageFolderSource(self.settings)
        super().__init__(cfg)

    @property
    def name(self) -> str:
        return self.source.label

    def locate(self, root: str) -> str:
        folder = self.settings.dataset_dir
        if not os.path.isdir(folder):
            raise FileNotFoundError(
                f"{self.name}: dataset folder not found: {folder} (DATASET.ROOT + DATASET.DIR). "
                f"Fix: point --root (DATA) at the folder that holds it, or set DATASET.DIR in "
                f"the dataset YAML (see {DOC})")
        return folder

    def load_full_split(self) -> FullSplit:
        return self.source.load(check_images=self.check_images)

    def few_shot(self, train, val, num_shots, seed):
        """The benchmarks' few-shot draw, refusing a cached draw of another split."""
        drawn_train, drawn_val = super().few_shot(train, val, num_shots, seed)
        cache = FewShotCache(self.cache, num_shots, seed).json_path
        if num_shots >= 1 and cache is not None:
            folder = os.path.dirname(cache)
            _check_drawn_from(drawn_train, train, cache, folder)
            if val is not None and drawn_val is not val:
                _check_drawn_from(drawn_val, val, cache, folder)
        return drawn_train, drawn_val


def _check_drawn_from(drawn: Sequence[Datum], full: Sequence[Datum], cache: str,
                      folder: str) -> None:
    """Raise :class:`StaleCacheError` if a (cached) draw holds items the split does not.

    Why: a few-shot cache is keyed by (K, seed) only; after a re-split of the same folder (new
    images, other fractions, another split file) an old cache would still pass the cheap
    existence check and silently train on images of the old split.
    """
    known = {(item.impath, item.label) for item in full}
    foreign = [item.impath for item in drawn if (item.impath, item.label) not in known]
    if foreign:
        raise StaleCacheError(
            f"The few-shot cache in {folder} (e.g. {os.path.basename(cache)}) holds "
            f"{len(foreign)} image(s) that are not in this run's training or val list, e.g. "
            f"{foreign[0]}: it was drawn from another split of this folder. Fix: delete "
            f"{folder} (a seed's draw is redrawn identically)")
