"""Tiny synthetic copies of the 15 benchmark datasets, in their exact upstream layouts.

Why: tests, the quick-start demo and benchmarks need every reader to run end to end without
downloading hundreds of gigabytes. :func:`make_dataset` writes real (small) JPEG images whose
colour and stripe pattern depend on the class, so a model can in principle learn them, plus
every file the reader opens — split JSON files, annotation text files, the ``.mat`` files
(written with ``scipy.io.savemat`` in the upstream field structure), ``classnames.txt`` and
``cat_to_name.json`` — with real class names (see :mod:`datasets.synthetic_names`).

Sizes are per class: ``per_class=(train, val, test)``. Where a split JSON is written, it holds
exactly these counts. The raw annotations hold the same images: official train lists get
``train + val`` images per class and test lists ``test``; folder-per-class datasets hold
``train + val + test`` images per class (the reader's 50/20/30 rebuild then decides). ImageNet
has ``train`` training and ``test`` validation images per class; the test-only variants have
``test`` images per class.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from . import YAML_NAMES
from .synthetic_names import class_table, imagenet_table

__all__ = [
    "DATASET_FOLDERS", "DEFAULT_NUM_CLASSES", "DEFAULT_PER_CLASS", "resolve_name",
    "dataset_folder", "expected_classnames", "make_dataset", "make_all", "label_of_image",
    "make_image_folder",
]

DEFAULT_NUM_CLASSES = 5
DEFAULT_PER_CLASS = (4, 2, 3)
SPLITS = ("train", "val", "test")

# Folder of each dataset under the data root, as DATASETS.md specifies (written out here rather
# than read from the readers, so tests comparing the two check the readers' paths).
DATASET_FOLDERS: Dict[str, str] = {
    "ImageNet": "imagenet",
    "Caltech101": "caltech-101",
    "OxfordPets": "oxford_pets",
    "StanfordCars": "stanford_cars",
    "OxfordFlowers": "oxford_flowers",
    "Food101": "food-101",
    "FGVCAircraft": "fgvc_aircraft",
    "SUN397": "sun397",
    "DescribableTextures": "dtd",
    "EuroSAT": "eurosat",
    "UCF101": "ucf101",
    "ImageNetV2": "imagenetv2",
    "ImageNetSketch": "imagenet-sketch",
    "ImageNetA": "imagenet-adversarial",
    "ImageNetR": "imagenet-rendition",
}

Entry = Tuple[str, int, str]  # (relative path, label, class name), as in a split JSON


def resolve_name(name: str) -> str:
    """Registry name for a registry or YAML name (case-insensitive), else ``ValueError``."""
    for registry, yaml_name in YAML_NAMES.items():
        if name.lower() in (registry.lower(), yaml_name):
            return registry
    choices = ", ".join(f"{yaml} ({reg})" for reg, yaml in YAML_NAMES.items())
    raise ValueError(f"Unknown dataset {name!r}; choose one of: {choices}")


def dataset_folder(name: str) -> str:
    """Folder of a dataset under ``DATASET.ROOT`` (e.g. ``caltech-101``)."""
    return DATASET_FOLDERS[resolve_name(name)]


def _variant_table(num_classes: int) -> List[Tuple[str, str]]:
    """ImageNet-A/-R: every other class of a twice-as-large ImageNet table (a proper subset)."""
    return imagenet_table(2 * num_classes)[1::2]


def expected_classnames(name: str, num_classes: int = DEFAULT_NUM_CLASSES) -> List[str]:
    """Final class names, in label order, that the reader must produce for a generated set."""
    registry = resolve_name(name)
    if registry in ("ImageNetA", "ImageNetR"):
        return [final for _, final in _variant_table(num_classes)]
    if registry.startswith("ImageNet"):
        return [final for _, final in imagenet_table(num_classes)]
    return [final for _, final in class_table(registry, num_classes)]


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


class _Painter:
    """Class-dependent images: a hue per class, stripes whose angle/period depend on the
    class, and per-image noise (seeded), so classes are separable but images differ."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self._bases: Dict[int, np.ndarray] = {}

    def _base(self, label: int) -> np.ndarray:
        if label not in self._bases:
            hue = (label * 0.618034) % 1.0
            colour = 255 * np.array([abs(hue * 6 - 3) - 1, 2 - abs(hue * 6 - 2),
                                     2 - abs(hue * 6 - 4)]).clip(0, 1)
            yy, xx = np.mgrid[0:self.size, 0:self.size]
            coord = xx if label % 2 == 0 else yy
            stripes = ((coord // (2 + label % 4)) % 2)[..., None]
            self._bases[label] = colour * (0.55 + 0.45 * stripes)
        return self._bases[label]

    def mean_colour(self, label: int) -> np.ndarray:
        return self._base(label).reshape(-1, 3).mean(axis=0)

    def save(self, path: Path, label: int, index: int) -> None:
        rng = np.random.default_rng((self.seed, label + 1, index))
        noise = rng.normal(0.0, 12.0, (self.size, self.size, 3))
        pixels = (self._base(label) + noise).clip(0, 255).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format="JPEG", quality=90)


# ---------------------------------------------------------------------------------------------
# Layout context shared by the per-dataset writers
# ---------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """What a per-dataset writer needs: its folder, classes, sizes, images and options."""

    root: Path
    table: List[Tuple[str, str]]
    per_class: Tuple[int, int, int]
    painter: _Painter
    with_split_json: bool
    seed: int
    split: Dict[str, List[Entry]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    _count: int = 0

    def image(self, relpath: str, label: int, under: str = "") -> str:
        """Write one image at ``root/under/relpath``; return ``relpath``."""
        self._count += 1
        self.painter.save(self.root / under / relpath, label, self._count)
        return relpath

    def text(self, relpath: str, lines: Sequence[str]) -> None:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines))

    def per_class_splits(self) -> Iterator[Tuple[int, str, str, str, int]]:
        """``(label, raw, final, split, index within class)`` for every image, class by class."""
        for label, (raw, final) in enumerate(self.table):
            index = 0
            for split, count in zip(SPLITS, self.per_class):
                for _ in range(count):
                    index += 1
                    yield label, raw, final, split, index

    def add(self, split: str, relpath: str, label: int, final: str) -> None:
        self.split[split].append((relpath, label, final))

    def save_split_json(self, filename: str) -> None:
        if self.with_split_json:
            data = {s: [list(e) for e in entries] for s, entries in self.split.items()}
            (self.root / filename).write_text(json.dumps(data, indent=4))

    def trainval(self, split: str) -> bool:
        return split in ("train", "val")


def _savemat(path: Path, data: dict) -> None:
    from scipy.io import savemat

    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), data)


# ---------------------------------------------------------------------------------------------
# Per-dataset writers
# ---------------------------------------------------------------------------------------------


def _class_folders(lay: _Layout, image_subdir: str, filename: Callable[[str, int], str],
                   split_file: str) -> None:
    """``<image_subdir>/<raw>/<file>`` per class (Caltech101, Food101, DTD, EuroSAT)."""
    for label, raw, final, split, index in lay.per_class_splits():
        relpath = lay.image(f"{raw}/{filename(raw, index)}", label, under=image_subdir)
        lay.add(split, relpath, label, final)
    lay.save_split_json(split_file)


def _caltech101(lay: _Layout) -> None:
    for ignored in ("BACKGROUND_Google", "Faces_easy"):
        for i in range(1, 4):
            lay.image(f"101_ObjectCategories/{ignored}/image_{i:04d}.jpg", 99)
    _class_folders(lay, "101_ObjectCategories", lambda raw, i: f"image_{i:04d}.jpg",
                   "split_zhou_Caltech101.json")


def _food101(lay: _Layout) -> None:
    lay.text("meta/classes.txt", [raw for raw, _ in lay.table])
    _class_folders(lay, "images", lambda raw, i: f"{100000 + 7919 * i}.jpg",
                   "split_zhou_Food101.json")


def _dtd(lay: _Layout) -> None:
    lay.text("labels/labels_joint_anno.txt", [])
    (lay.root / "imdb").mkdir(parents=True, exist_ok=True)
    _class_folders(lay, "images", lambda raw, i: f"{raw}_{i:04d}.jpg",
                   "split_zhou_DescribableTextures.json")


def _eurosat(lay: _Layout) -> None:
    _class_folders(lay, "2750", lambda raw, i: f"{raw}_{i}.jpg", "split_zhou_EuroSAT.json")


def _pets_species(table: List[Tuple[str, str]]) -> List[Tuple[int, int]]:
    """``(species, breed id within species)`` per class; cat breeds are capitalised (1)."""
    counters = {1: 0, 2: 0}
    out = []
    for raw, _ in table:
        species = 1 if raw[0].isupper() else 2
        counters[species] += 1
        out.append((species, counters[species]))
    return out


def _oxford_pets(lay: _Layout) -> None:
    lists: Dict[str, List[str]] = {"trainval.txt": [], "test.txt": []}
    species = _pets_species(lay.table)
    for label, raw, final, split, index in lay.per_class_splits():
        imname = f"{raw}_{index}"
        lay.add(split, lay.image(f"{imname}.jpg", label, under="images"), label, final)
        target = "trainval.txt" if lay.trainval(split) else "test.txt"
        kind, breed_id = species[label]
        lists[target].append(f"{imname} {label + 1} {kind} {breed_id}")
    for name, lines in lists.items():
        lay.text(f"annotations/{name}", lines)
    lay.text("annotations/list.txt", ["#Image CLASS-ID SPECIES BREED ID"] + lists["trainval.txt"])
    lay.save_split_json("split_zhou_OxfordPets.json")


def _cars_annotations(records: List[Tuple[int, str]]) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    annos = np.zeros((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, (label, fname) in enumerate(records):
        annos[0, i] = (np.array([[1]], np.uint8), np.array([[1]], np.uint8),
                       np.array([[30]], np.uint8), np.array([[30]], np.uint8),
                       np.array([[label + 1]], np.uint8), np.array([fname]))
    return annos


def _stanford_cars(lay: _Layout) -> None:
    records: Dict[str, List[Tuple[int, str]]] = {"cars_train": [], "cars_test": []}
    for label, _raw, final, split, _index in sorted(lay.per_class_splits(), key=lambda r: r[4]):
        folder = "cars_train" if lay.trainval(split) else "cars_test"
        fname = f"{len(records[folder]) + 1:05d}.jpg"
        records[folder].append((label, fname))
        lay.add(split, lay.image(f"{folder}/{fname}", label), label, final)
    class_names = np.empty((1, len(lay.table)), dtype=object)
    for i, (raw, _) in enumerate(lay.table):
        class_names[0, i] = raw
    _savemat(lay.root / "devkit/cars_meta.mat", {"class_names": class_names})
    _savemat(lay.root / "devkit/cars_train_annos.mat",
             {"annotations": _cars_annotations(records["cars_train"])})
    _savemat(lay.root / "cars_test_annos_withlabels.mat",
             {"annotations": _cars_annotations(records["cars_test"])})
    lay.save_split_json("split_zhou_StanfordCars.json")


def _oxford_flowers(lay: _Layout) -> None:
    rows = list(lay.per_class_splits())
    random.Random(lay.seed).shuffle(rows)  # image numbers interleave the categories
    labels = np.zeros((1, len(rows)), dtype=np.float64)
    for number, (label, raw, final, split, _) in enumerate(rows, start=1):
        labels[0, number - 1] = int(raw)
        lay.add(split, lay.image(f"image_{number:05d}.jpg", label, under="jpg"), label, final)
    _savemat(lay.root / "imagelabels.mat", {"labels": labels})
    (lay.root / "cat_to_name.json").write_text(json.dumps(dict(lay.table)))
    lay.save_split_json("split_zhou_OxfordFlowers.json")


def _fgvc_aircraft(lay: _Layout) -> None:
    lists: Dict[str, List[str]] = {s: [] for s in SPLITS}
    for number, (label, raw, _, split, _) in enumerate(lay.per_class_splits()):
        image_id = f"{1000000 + 37 * number:07d}"
        lay.image(f"images/{image_id}.jpg", label)
        lists[split].append(f"{image_id} {raw}")
    lay.text("variants.txt", [raw for raw, _ in lay.table])
    for split, lines in lists.items():
        lay.text(f"images_variant_{split}.txt", lines)


def _sun397(lay: _Layout) -> None:
    lists: Dict[str, List[str]] = {"Training_01.txt": [], "Testing_01.txt": []}
    rng = random.Random(lay.seed)
    for label, raw, final, split, _ in lay.per_class_splits():
        name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(16))
        relpath = lay.image(f"{raw[1:]}/sun_{name}.jpg", label, under="SUN397")
        lay.add(split, relpath, label, final)
        lists["Training_01.txt" if lay.trainval(split) else "Testing_01.txt"].append("/" + relpath)
    lay.text("ClassName.txt", [raw for raw, _ in lay.table])
    for name, lines in lists.items():
        lay.text(name, lines)
    lay.save_split_json("split_zhou_SUN397.json")


def _ucf101(lay: _Layout) -> None:
    lists: Dict[str, List[str]] = {"trainlist01.txt": [], "testlist01.txt": []}
    for label, raw, final, split, index in lay.per_class_splits():
        group = 8 + index if lay.trainval(split) else index  # split 1 tests groups 1-7
        video = f"v_{raw}_g{group:02d}_c01"
        relpath = lay.image(f"{final}/{video}.jpg", label, under="UCF-101-midframes")
        lay.add(split, relpath, label, final)
        if lay.trainval(split):
            lists["trainlist01.txt"].append(f"{raw}/{video}.avi {label + 1}")
        else:
            lists["testlist01.txt"].append(f"{raw}/{video}.avi")
    class_ind = [f"{i + 1} {raw}" for i, (raw, _) in enumerate(lay.table)]
    lay.text("ucfTrainTestlist/classInd.txt", class_ind)
    for name, lines in lists.items():
        lay.text(f"ucfTrainTestlist/{name}", lines)
    lay.save_split_json("split_zhou_UCF101.json")


def _classnames_txt(lay: _Layout, table: List[Tuple[str, str]]) -> None:
    lay.text("classnames.txt", [f"{wnid} {name}" for wnid, name in table])


def _imagenet(lay: _Layout) -> None:
    _classnames_txt(lay, lay.table)
    val_number = 0
    for label, wnid, _, split, index in lay.per_class_splits():
        if split == "train":
            lay.image(f"images/train/{wnid}/{wnid}_{index}.JPEG", label)
        elif split == "test":
            val_number += 1
            lay.image(f"images/val/{wnid}/ILSVRC2012_val_{val_number:08d}.JPEG", label)


def _test_only(lay: _Layout, folder: Callable[[int, str], str], filename: str) -> None:
    """The ``test`` share of each class in ``folder(label, wnid)`` (test-only variants)."""
    for label, wnid, _, split, index in lay.per_class_splits():
        if split == "test":
            lay.image(f"{folder(label, wnid)}/{filename.format(i=index, h=f'{index:040x}')}", label)


def _imagenetv2(lay: _Layout) -> None:
    _classnames_txt(lay, lay.table)
    _test_only(lay, lambda label, wnid: f"imagenetv2-matched-frequency-format-val/{label}",
               "{h}.jpeg")


def _imagenet_sketch(lay: _Layout) -> None:
    _classnames_txt(lay, lay.table)
    _test_only(lay, lambda label, wnid: f"images/{wnid}", "sketch_{i}.JPEG")


def _adversarial(subdir: str, filename: str) -> Callable[[_Layout], None]:
    def write(lay: _Layout) -> None:
        _classnames_txt(lay, imagenet_table(2 * len(lay.table)))  # all ImageNet classes
        lay.text(f"{subdir}/README.txt", ["Synthetic stand-in; the 200-class subset."])
        _test_only(lay, lambda label, wnid: f"{subdir}/{wnid}", filename)
    return write


_WRITERS: Dict[str, Callable[[_Layout], None]] = {
    "ImageNet": _imagenet, "Caltech101": _caltech101, "OxfordPets": _oxford_pets,
    "StanfordCars": _stanford_cars, "OxfordFlowers": _oxford_flowers, "Food101": _food101,
    "FGVCAircraft": _fgvc_aircraft, "SUN397": _sun397, "DescribableTextures": _dtd,
    "EuroSAT": _eurosat, "UCF101": _ucf101, "ImageNetV2": _imagenetv2,
    "ImageNetSketch": _imagenet_sketch, "ImageNetA": _adversarial("imagenet-a", "{i}.jpg"),
    "ImageNetR": _adversarial("imagenet-r", "art_{i}.jpg"),
}


def _table_for(registry: str, num_classes: int) -> List[Tuple[str, str]]:
    if registry in ("ImageNetA", "ImageNetR"):
        return _variant_table(num_classes)
    if registry.startswith("ImageNet"):
        return imagenet_table(num_classes)
    return class_table(registry, num_classes)


def make_dataset(
    name: str, root: Path, *, num_classes: Optional[int] = None,
    per_class: Tuple[int, int, int] = DEFAULT_PER_CLASS, image_size: int = 32,
    with_split_json: bool = True, seed: int = 0,
) -> Path:
    """Write a synthetic copy of dataset ``name`` (registry or YAML name) under ``root``.

    Returns the dataset folder (``root/<folder>``); point ``DATASET.ROOT`` (``--root``) at
    ``root``. ``num_classes`` defaults to 5; ``per_class`` is ``(train, val, test)`` images
    per class (module docstring); ``with_split_json=False`` leaves out the split JSON so the
    reader rebuilds the split from the raw annotations. Deterministic for a given ``seed``.
    """
    registry = resolve_name(name)
    num_classes = DEFAULT_NUM_CLASSES if num_classes is None else num_classes
    if num_classes < 1 or min(per_class) < 0 or len(per_class) != 3:
        raise ValueError(f"need num_classes >= 1 and 3 non-negative per-class counts, got "
                         f"{num_classes} and {per_class}")
    folder = Path(root) / DATASET_FOLDERS[registry]
    folder.mkdir(parents=True, exist_ok=True)
    sizes = (per_class[0], per_class[1], per_class[2])  # a list is accepted too
    layout = _Layout(folder, _table_for(registry, num_classes), sizes,
                     _Painter(image_size, seed), with_split_json, seed)
    _WRITERS[registry](layout)
    return folder


def label_of_image(path: str, num_classes: int) -> int:
    """The class whose colour a generated image has (nearest mean colour).

    Why: lets tests check that a reader attached each image to the right label, independently
    of the reader's own label rules.
    """
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    painter = _Painter(pixels.shape[0], 0)
    mean = pixels.reshape(-1, 3).mean(axis=0)
    distances = [np.abs(painter.mean_colour(label) - mean).sum() for label in range(num_classes)]
    return int(np.argmin(distances))


def make_all(root: Path, names: Optional[Sequence[str]] = None, **kwargs) -> Dict[str, Path]:
    """:func:`make_dataset` for several datasets (default: all 15); ``{registry: folder}``."""
    names = list(DATASET_FOLDERS) if names is None else [resolve_name(n) for n in names]
    return {name: make_dataset(name, root, **kwargs) for name in names}


def make_image_folder(
    folder: Path, *, num_classes: int = DEFAULT_NUM_CLASSES, per_class: int = 10,
    subsets: Optional[Dict[str, int]] = None, classnames_txt: bool = True,
    image_size: int = 32, seed: int = 0,
) -> List[Tuple[str, str]]:
    """Write a user-style class-folder tree for the ``ImageFolder`` reader at ``folder``.

    Plain ``folder/<class>/<n>.jpg`` with ``per_class`` images per class, or, with ``subsets``
    (e.g. ``{"train": 6, "val": 2, "test": 3}``), ``folder/<subset>/<class>/<n>.jpg``. Folder
    names are Food101's raw class names (``apple_pie``, ...); ``classnames_txt`` adds
    ``classnames.txt`` mapping each to a readable name (``Apple Pie``). Returns
    ``[(folder name, class name)]`` in label order.
    """
    folder = Path(folder)
    table = [(raw, raw.replace("_", " ").title() if classnames_txt else raw)
             for raw, _ in class_table("Food101", num_classes)]
    painter = _Painter(image_size, seed)
    counts = subsets or {"": per_class}
    index = 0
    for subset, count in counts.items():
        for label, (raw, _) in enumerate(table):
            for i in range(count):
                index += 1
                painter.save(folder / subset / raw / f"{subset or 'img'}_{i:04d}.jpg", label, index)
    if classnames_txt:
        (folder / "classnames.txt").write_text("".join(f"{raw} {name}\n" for raw, name in table))
    return table
