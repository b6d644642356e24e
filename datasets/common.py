"""Shared logic of the benchmark readers: split files, split builders, base/new subsampling,
fast ``Datum`` construction and the checks that turn bad data into clear errors.

Why one module: upstream copies these helpers into every dataset file (``OxfordPets.read_split``,
``DTD.read_and_split_data``, ...). Here each exists once and the readers only describe their
layout. The on-disk caches live in :mod:`datasets.cache`, the reader templates in
:mod:`datasets.base`.

Behaviour, printed lines and the RNG order follow Dassl's (docs/engine.md; ``random`` is consumed
exactly as upstream), so a split rebuilt from the raw annotations with the same seed is the same
as Dassl's — except that folder listings are sorted (upstream uses filesystem order, which is
not reproducible across machines).
"""
from __future__ import annotations

import gc
import json
import math
import os
import random
from collections import OrderedDict, defaultdict
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from disakit.dassl_api import Datum, listdir_nohidden, read_json, write_json

from .store import atomic_write

__all__ = [
    "DATASETS_DOC", "SUBSAMPLE_CHOICES", "MissingImagesError", "SplitFileError", "dataset_root",
    "require_path", "warn_short_classes",
    "subsample_setting", "make_datum", "relabel", "bulk_build", "read_split", "save_split",
    "split_trainval", "split_by_fractions", "read_and_split_data", "concat_splits", "label_of",
    "subsample_classes", "find_missing_images",
    "check_images_exist", "read_classnames", "read_text_lines",
]

DATASETS_DOC = "DATASETS.md"
SUBSAMPLE_CHOICES = ("all", "base", "new")
_MAX_LISTED = 5  # how many missing paths an error message shows

Split = Tuple[List[Datum], List[Datum], List[Datum]]
# A dataset's full lists as a reader loads them: val is None where the test set serves as val
# (ImageNet, an ImageFolder with one of val/ and test/).
FullSplit = Tuple[List[Datum], Optional[List[Datum]], List[Datum]]


class MissingImagesError(FileNotFoundError):
    """A split or annotation file lists images that are not on disk."""


class SplitFileError(ValueError):
    """A split JSON that cannot be used (not JSON, not a CoOp split); names the file and fix."""


SPLIT_FIX = ("Fix: download the official split file again (see {doc}), or delete it to have a "
             "random split generated (then results are not comparable with published numbers)")


# ---------------------------------------------------------------------------------------------
# Paths, config and clear errors
# ---------------------------------------------------------------------------------------------


def dataset_root(cfg) -> str:
    """``abspath(expanduser(DATASET.ROOT))``, as every upstream reader computes it."""
    return os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))


def require_path(path: str, dataset: str, what: str = "dataset folder") -> str:
    """Return ``path`` if it exists, else raise ``FileNotFoundError`` naming it and the fix.

    Why: upstream fails much later with a stack trace from ``os.listdir`` or ``open`` (and even
    creates ``split_fewshot/`` inside a wrong folder). The message names the expected path and
    points to DATASETS.md, where the layout of every dataset is described.
    """
    if os.path.exists(path):
        return path
    raise FileNotFoundError(
        f"{dataset}: {what} not found: {path}\n"
        f"Fix: prepare the {dataset} data as described in {DATASETS_DOC} (section '{dataset}') "
        f"and pass its parent folder as --root (DATASET.ROOT)."
    )


def subsample_setting(cfg) -> str:
    """``DATASET.SUBSAMPLE_CLASSES`` (a toolkit key), defaulting to ``"all"`` when absent."""
    return getattr(cfg.DATASET, "SUBSAMPLE_CLASSES", "all")


def read_text_lines(path: str) -> List[str]:
    """Stripped, non-empty lines of a text file, skipping ``#`` comment lines."""
    with open(path, "r") as f:
        lines = (line.strip() for line in f)
        return [line for line in lines if line and not line.startswith("#")]


def read_classnames(text_file: str) -> "OrderedDict[str, str]":
    """ImageNet ``classnames.txt`` → ordered ``{wnid: class name}`` (name = rest of the line)."""
    classnames: "OrderedDict[str, str]" = OrderedDict()
    for line in read_text_lines(text_file):
        folder, _, name = line.partition(" ")
        classnames[folder] = name.strip()
    return classnames


# ---------------------------------------------------------------------------------------------
# Fast Datum construction
# ---------------------------------------------------------------------------------------------

_NEW = object.__new__
_DATUM_HAS_DICT = hasattr(_NEW(Datum), "__dict__")


def make_datum(impath: str, label: int = 0, domain: int = 0, classname: str = "") -> Datum:
    """Build a ``Datum`` without the per-file ``stat`` of its constructor.

    Why: Dassl's ``Datum.__init__`` checks that every file exists, which costs minutes for
    ImageNet's 1.28 M images and seconds for a split file on a network disk. The readers check
    existence once, in bulk (:func:`check_images_exist`), then use this. The object is
    identical to ``Datum(...)`` (same class, same ``_impath``/``_label``/``_domain``/
    ``_classname`` attributes), so it pickles and behaves the same under a real Dassl.
    """
    item = _NEW(Datum)
    state = {"_impath": impath, "_label": label, "_domain": domain, "_classname": classname}
    if _DATUM_HAS_DICT:
        item.__dict__ = state
    else:  # pragma: no cover - a Datum with __slots__
        for key, value in state.items():
            object.__setattr__(item, key, value)
    return item


def relabel(item: Datum, label: int) -> Datum:
    """A fresh ``Datum`` with ``item``'s path and class name, a new label and domain 0."""
    return make_datum(item.impath, label, 0, item.classname)


@contextmanager
def bulk_build() -> Iterator[None]:
    """Pause the cyclic garbage collector while creating very many objects.

    Why: the collector runs every ~700 allocations and re-walks all live objects; building
    1.28 M ``Datum``s with it enabled takes about 2.5x longer. No cycles are created here.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------------------------------------
# Missing images
# ---------------------------------------------------------------------------------------------


def _listdir_set(folder: str) -> frozenset:
    try:
        return frozenset(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()


def find_missing_images(impaths: Iterable[str]) -> List[str]:
    """Paths of ``impaths`` that do not exist, in input order.

    Why one ``listdir`` per folder instead of one ``stat`` per file: a split of 50 k images in
    100 folders costs 100 system calls, which matters on network file systems.
    """
    listings: Dict[str, frozenset] = {}
    missing = []
    for path in impaths:
        folder, name = os.path.split(path)
        names = listings.get(folder)
        if names is None:
            names = listings[folder] = _listdir_set(folder)
        if name not in names:
            missing.append(path)
    return missing


def check_images_exist(items: Iterable[Datum], source: str, image_dir: str, dataset: str) -> None:
    """Raise :class:`MissingImagesError` (count, first few paths, fix) if any image is missing.

    ``source`` names the file that listed the images (split JSON or annotation file).
    """
    missing = find_missing_images(item.impath for item in items)
    if not missing:
        return
    shown = "\n".join(f"  {path}" for path in missing[:_MAX_LISTED])
    more = f"\n  ... and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
    raise MissingImagesError(
        f"{dataset}: {source} lists {len(missing)} image(s) that do not exist, e.g.:\n"
        f"{shown}{more}\n"
        f"Fix: extract the {dataset} images so that they lie under {image_dir} in the layout "
        f"given in {DATASETS_DOC} (section '{dataset}'), or point --root (DATASET.ROOT) at the "
        f"folder that holds them."
    )


# ---------------------------------------------------------------------------------------------
# Split files (docs/engine.md#dataset-readers-and-splits)
# ---------------------------------------------------------------------------------------------


def _convert_entries(entries: Sequence, path_prefix: str, where: str) -> List[Datum]:
    try:
        return [
            make_datum(os.path.join(path_prefix, impath), int(label), 0, classname)
            for impath, label, classname in entries
        ]
    except (TypeError, ValueError) as exc:
        raise SplitFileError(
            f"{where}: malformed entry ({exc}); expected [relpath, label, classname] lists. "
            + SPLIT_FIX.format(doc=DATASETS_DOC)
        ) from exc


def read_split(
    filepath: str, path_prefix: str, check_images: bool = True, dataset: str = "dataset"
) -> Split:
    """Read a CoOp ``split_zhou_<Name>.json`` into train/val/test ``Datum`` lists.

    Prints ``Reading split from <path>``; paths are ``join(path_prefix, relpath)``, domain 0,
    file order kept. With ``check_images`` (the default) all images are checked in bulk and a
    :class:`MissingImagesError` lists the missing ones; ``check_images=False`` parses the file
    alone (used to validate split files without the images).
    """
    print(f"Reading split from {filepath}")
    try:
        split = read_json(filepath)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        where = (f" (line {exc.lineno}, column {exc.colno}: {exc.msg})"
                 if isinstance(exc, json.JSONDecodeError) else f" ({exc})")
        raise SplitFileError(f"split file {filepath} is not valid JSON{where}. "
                             + SPLIT_FIX.format(doc=DATASETS_DOC)) from None
    missing_keys = ([key for key in ("train", "val", "test") if key not in split]
                    if isinstance(split, dict) else ["train", "val", "test"])
    if missing_keys:
        raise SplitFileError(f"{filepath}: missing key(s) {missing_keys}; not a CoOp split "
                             "file. " + SPLIT_FIX.format(doc=DATASETS_DOC))
    if split.get("generated"):
        print(f"Warning: {filepath} is a generated random split ({split['generated']}), not "
              "the official CoOp split: results are NOT comparable with published numbers")
    with bulk_build():
        train, val, test = (
            _convert_entries(split[key], path_prefix, f"{filepath} [{key}]")
            for key in ("train", "val", "test")
        )
    if check_images:
        check_images_exist((*train, *val, *test), filepath, path_prefix, dataset)
    return train, val, test


def _strip_prefix(impath: str, path_prefix: str) -> str:
    if impath.startswith(path_prefix):
        impath = impath[len(path_prefix):]
    return impath[1:] if impath.startswith("/") else impath


def save_split(
    train: Sequence[Datum], val: Sequence[Datum], test: Sequence[Datum], filepath: str,
    path_prefix: str, generated: str = "", extra: Optional[Dict[str, object]] = None,
) -> None:
    """Write a split JSON (indent 4) with paths relative to ``path_prefix``.

    Prints ``Saved split to <path>``. A non-empty ``generated`` is stored under the extra key
    ``"generated"`` (readers ignore unknown keys), so that every later run reading this file
    warns again that it is not an official split; ``extra`` adds further keys (the ImageFolder
    reader records how it made its split). The file is written to a temporary name and renamed,
    so concurrent runs never read half a file.
    """
    def _extract(items: Sequence[Datum]) -> list:
        return [(_strip_prefix(it.impath, path_prefix), it.label, it.classname) for it in items]

    split: Dict[str, object] = {
        "train": _extract(train), "val": _extract(val), "test": _extract(test)
    }
    if generated:
        split["generated"] = generated
    split.update(extra or {})
    atomic_write(filepath, lambda tmp: write_json(split, tmp))
    print(f"Saved split to {filepath}")


# ---------------------------------------------------------------------------------------------
# Split builders (used only when the split JSON is absent; they consume `random`)
# ---------------------------------------------------------------------------------------------


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(what)


def split_trainval(
    trainval: Sequence[Datum], p_val: float = 0.2
) -> Tuple[List[Datum], List[Datum]]:
    """Split an official trainval list into train and val per label (seeded by ``random``).

    Per label, in first-appearance order: ``n_val = round(n * p_val)`` (must be > 0), the
    label's indices are shuffled and the first ``n_val`` go to val — exactly upstream's draws.
    """
    p_trn = 1 - p_val
    print(f"Splitting trainval into {p_trn:.0%} train and {p_val:.0%} val")
    tracker: Dict[int, List[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train: List[Datum] = []
    val: List[Datum] = []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        _need(n_val > 0, f"class {label} has only {len(idxs)} trainval images; too few for "
                         f"a {p_val:.0%} val split (at least 3 are needed)")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def _split_counts(n_total: int, p_trn: float, p_val: float, where: str) -> Tuple[int, int]:
    n_train, n_val = round(n_total * p_trn), round(n_total * p_val)
    _need(n_train > 0 and n_val > 0 and n_total - n_train - n_val > 0,
          f"{where} has only {n_total} images; too few for a train/val/test split")
    return n_train, n_val


def split_by_fractions(
    impaths: List[str], label: int, classname: str, p_trn: float, p_val: float, where: str
) -> Split:
    """Shuffle one class's images (``random.shuffle``) and cut them into train/val/test."""
    random.shuffle(impaths)
    n_train, n_val = _split_counts(len(impaths), p_trn, p_val, where)
    train, val, test = (
        [make_datum(p, label, 0, classname) for p in part]
        for part in (impaths[:n_train], impaths[n_train:n_train + n_val], impaths[n_train + n_val:])
    )
    return train, val, test


def read_and_split_data(
    image_dir: str, p_trn: float = 0.5, p_val: float = 0.2, ignored: Sequence[str] = (),
    new_cnames: Optional[Dict[str, str]] = None,
) -> Split:
    """Build a random 50/20/30 split from ``image_dir/<category>/<image>`` folders.

    Label = index of the category in the sorted folder list (after dropping ``ignored``);
    class name = ``new_cnames.get(category, category)``. Image names are sorted before the
    shuffle (upstream uses ``os.listdir`` order, which differs across file systems).
    """
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    p_tst = 1 - p_trn - p_val
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")
    new_cnames = new_cnames or {}

    def _category_split(label: int, category: str) -> Split:
        folder = os.path.join(image_dir, category)
        images = [os.path.join(folder, im) for im in listdir_nohidden(folder, sort=True)]
        classname = new_cnames.get(category, category)
        return split_by_fractions(images, label, classname, p_trn, p_val, folder)

    return concat_splits(_category_split(lab, cat) for lab, cat in enumerate(categories))


def concat_splits(parts: Iterable[Split]) -> Split:
    """Concatenate per-class ``(train, val, test)`` triples, keeping their order."""
    train, val, test = [], [], []
    for part_train, part_val, part_test in parts:
        train.extend(part_train)
        val.extend(part_val)
        test.extend(part_test)
    return train, val, test


def label_of(cname2lab: Dict[str, int], name: str, source: str) -> int:
    """``cname2lab[name]``, or a ``KeyError`` naming the annotation file that has ``name``."""
    try:
        return cname2lab[name]
    except KeyError:
        raise KeyError(
            f"{source}: class {name!r} is not in the dataset's class list; the annotation files "
            f"do not belong together (re-extract them from the same archive)"
        ) from None


# ---------------------------------------------------------------------------------------------
# Few-shot
# ---------------------------------------------------------------------------------------------


def warn_short_classes(items: Sequence[Datum], num_shots: int, what: str = "training") -> None:
    """Print one line per image count of the classes with fewer than ``num_shots`` items.

    ``items`` is a drawn few-shot list: Dassl's sampling (kept exactly) takes all the images of
    a class that has fewer than K, so such classes are exactly those with fewer than K items.
    Why: the run is then not a K-shot run for those classes, and nothing else says so.
    """
    counts: Dict[int, int] = defaultdict(int)
    for item in items:
        counts[item.label] += 1
    by_count: Dict[int, int] = defaultdict(int)
    for count in counts.values():
        if count < num_shots:
            by_count[count] += 1
    for count, classes in sorted(by_count.items()):
        noun = "class has" if classes == 1 else "classes have"
        images = "image" if count == 1 else "images"
        print(f"Warning: {classes} {noun} only {count} {what} {images} (< NUM_SHOTS "
              f"{num_shots}): all their images are used")


# ---------------------------------------------------------------------------------------------
# Base-to-novel
# ---------------------------------------------------------------------------------------------


def subsample_classes(*datasets: Sequence[Datum], subsample: str = "all"):
    """Keep the base (first ``ceil(n/2)``) or new (rest) classes and relabel them ``0..``.

    The class set is the sorted labels of the **first** list (train). ``"all"`` returns the
    inputs unchanged; otherwise prints ``SUBSAMPLE <BASE|NEW> CLASSES!`` and returns a list of
    new lists of fresh ``Datum``s (domain 0), in input order (as Dassl does).
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}"
        )
    if subsample == "all":
        return datasets
    labels = sorted({item.label for item in datasets[0]})
    m = math.ceil(len(labels) / 2)
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabeler = {y: y_new for y_new, y in enumerate(selected)}
    return [
        [relabel(item, relabeler[item.label]) for item in dataset if item.label in relabeler]
        for dataset in datasets
    ]
