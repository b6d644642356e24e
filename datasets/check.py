"""``python -m disakit check-data DATA``: is a data folder ready for a (long) run?

For each requested dataset -- any of the 15 benchmarks, and ImageFolder datasets named by their
YAML -- and without writing anything, it reports

* found or missing (with a hint when the folder is there under another name or one level off);
* layout problems: a missing image folder or split file, wrong nesting (an extra or a missing
  folder level), images listed by the split but not on disk (count and the first few), images
  that cannot be decoded;
* the train / val / test image and class counts, taken from the split file present (or the
  official lists / the folders where a dataset has no split file), and, as an extra line, how
  they compare with the official CoOp split (DATASETS.md, section 4).

It is fast: images are checked for existence with one directory listing per folder, and only a
few per dataset are decoded (``--verify-images`` decodes all of them). The exit status is 1 when
a requested dataset is missing or not ready (without ``--datasets``: when a dataset that is
present is not ready, or none is found).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from . import TEST_ONLY, YAML_NAMES
from .common import find_missing_images, read_classnames, read_split, read_text_lines
from .imagefolder import (
    CLASSNAMES_FILE,
    ImageFolderSettings,
    ImageFolderSource,
    class_folders,
    image_files,
    read_class_names,
    subset_folders,
)
from .store import FEWSHOT_DIR

__all__ = ["Official", "OFFICIAL", "Report", "check_benchmark", "check_imagefolder",
           "check_data", "format_report", "main"]

DEFAULT_SAMPLE = 8      # images decoded per dataset without --verify-images
SHOWN = 5               # paths shown per problem
FEW_SHOT_K = 16         # the protocols' largest shot count


class Official(NamedTuple):
    """Sizes of the official CoOp data (``val`` None: ImageNet's val set is its test set)."""

    train: Optional[int]
    val: Optional[int]
    test: int
    classes: int


# DATASETS.md, section 4 (the CoOp split files; ImageNet's and the variants' official sets).
OFFICIAL: Dict[str, Official] = {
    "ImageNet": Official(1_281_167, None, 50_000, 1000),
    "Caltech101": Official(4_128, 1_649, 2_465, 100),
    "OxfordPets": Official(2_944, 736, 3_669, 37),
    "StanfordCars": Official(6_509, 1_635, 8_041, 196),
    "OxfordFlowers": Official(4_093, 1_633, 2_463, 102),
    "Food101": Official(50_500, 20_200, 30_300, 101),
    "FGVCAircraft": Official(3_334, 3_333, 3_333, 100),
    "SUN397": Official(15_880, 3_970, 19_850, 397),
    "DescribableTextures": Official(2_820, 1_128, 1_692, 47),
    "EuroSAT": Official(13_500, 5_400, 8_100, 10),
    "UCF101": Official(7_639, 1_898, 3_783, 101),
    "ImageNetV2": Official(None, None, 10_000, 1000),
    "ImageNetSketch": Official(None, None, 50_889, 1000),
    "ImageNetA": Official(None, None, 7_500, 200),
    "ImageNetR": Official(None, None, 30_000, 200),
}

# Other names a dataset folder is often found under (archives, torchvision, other codebases).
ALIASES: Dict[str, Tuple[str, ...]] = {
    "Caltech101": ("caltech101", "caltech_101"),
    "OxfordPets": ("oxford-iiit-pet", "oxford_iiit_pet", "pets"),
    "StanfordCars": ("stanford-cars", "cars", "stanford_cars_dataset"),
    "OxfordFlowers": ("flowers-102", "flowers102", "flowers"),
    "Food101": ("food101", "food_101"),
    "FGVCAircraft": ("fgvc-aircraft-2013b", "fgvc-aircraft", "aircraft"),
    "DescribableTextures": ("dtd-r1.0.1", "textures"),
    "EuroSAT": ("EuroSAT_RGB", "EuroSAT"),
    "UCF101": ("UCF-101", "ucf_101"),
    "ImageNetSketch": ("sketch", "imagenet_sketch"),
    "ImageNetA": ("imagenet-a", "imagenet_a"),
    "ImageNetR": ("imagenet-r", "imagenet_r"),
    "ImageNetV2": ("imagenetv2-matched-frequency-format-val", "imagenet-v2"),
}
# Image folders too generic to say which dataset a stray copy at the root belongs to.
GENERIC_SUBDIRS = frozenset({"images", "jpg"})


def _n(value: int) -> str:
    return f"{value:,}"


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _subdirs(folder: str) -> List[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


def _count_files(folder: str) -> int:
    """Non-hidden files directly in ``folder`` (what the folder-scanning readers read)."""
    with os.scandir(folder) as entries:
        return sum(1 for e in entries if not e.name.startswith(".") and not e.is_dir())


def _file_paths(folder: str) -> List[str]:
    with os.scandir(folder) as entries:
        return sorted(os.path.join(folder, e.name) for e in entries
                      if not e.name.startswith(".") and not e.is_dir())


def _first(items: Sequence[str], n: int = SHOWN) -> str:
    """The first ``n`` items, one per line (indented under the report text)."""
    shown = "\n".join(f"  {item}" for item in items[:n])
    more = f"\n  ... and {_n(len(items) - n)} more" if len(items) > n else ""
    return f"{shown}{more}"


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What ``check-data`` found for one dataset."""

    name: str                      # as requested (a configs/datasets YAML stem or a path)
    dataset: str                   # registry name (``ImageFolder`` for your own data)
    folder: str                    # the dataset folder checked
    found: bool = True
    problems: List[str] = field(default_factory=list)   # the run would fail or be wrong
    warnings: List[str] = field(default_factory=list)   # it runs, but read this
    lines: List[Tuple[str, str]] = field(default_factory=list)  # (label, text) facts
    counts: Dict[str, int] = field(default_factory=dict)  # train / val / test / classes
    hints: List[str] = field(default_factory=list)       # where a missing folder may be
    images: List[str] = field(default_factory=list)      # image paths on disk (for decoding)
    every_image: bool = False      # collect every image path (to decode them all)

    def ready(self, strict: bool = False) -> bool:
        return self.found and not self.problems and not (strict and self.warnings)

    def status(self, strict: bool = False) -> str:
        if not self.found:
            return "missing"
        return "ready" if self.ready(strict) else "NOT READY"

    def line(self, label: str, text: str) -> None:
        self.lines.append((label, text))

    def set_counts(self, train: Optional[int], val: Optional[int], test: int,
                   classes: int) -> None:
        self.counts = {k: v for k, v in (("train", train), ("val", val), ("test", test),
                                         ("classes", classes)) if v is not None}

    def sizes(self) -> str:
        c = self.counts
        parts = [f"{_n(c[k])} {k}" for k in ("train", "val", "test") if k in c]
        return f"{' / '.join(parts)} images, {_n(c.get('classes', 0))} classes"


def format_report(report: Report, strict: bool = False) -> str:
    """The report's block of text (the CLI prints one per dataset)."""
    title = (report.name if report.name == report.dataset
             else f"{report.name} ({report.dataset})")
    if not report.found:
        lines = [f"{title}: missing (no folder {report.folder})"]
        lines += [f"    hint     {hint}" for hint in report.hints]
        return "\n".join(lines)
    lines = [f"{title}: {report.status(strict)}", f"    folder   {report.folder}"]
    rows = [*report.lines, *(("problem", t) for t in report.problems),
            *(("warning", t) for t in report.warnings)]
    indent = "\n" + " " * 13
    lines += [f"    {label:<8} {text.replace(chr(10), indent)}" for label, text in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------------------------


def _relocation_hint(missing: str, dataset_dir: str, image_dir: str) -> str:
    """Where an image the split expects at ``missing`` actually is, and the fix ('' if unknown).

    Why: the usual cause of missing images is an archive extracted one folder level too deep
    (``eurosat/EuroSAT/2750``, Kaggle's ``cars_train/cars_train``) or too shallow
    (``eurosat/AnnualCrop``).
    """
    rel = os.path.relpath(missing, image_dir)
    sub = os.path.relpath(image_dir, dataset_dir)
    bases = [os.path.join(dataset_dir, child) if sub == "." else
             os.path.join(dataset_dir, child, sub) for child in _subdirs(dataset_dir)]
    if sub != ".":
        bases += [os.path.join(image_dir, child) for child in _subdirs(image_dir)]
        bases.append(dataset_dir)
    first = rel.split(os.sep)[0]
    bases = [b for b in bases if b != image_dir]
    for base in bases:
        found = os.path.join(base, rel)
        if os.path.exists(found):
            return f"found {found}: {_level_fix(found, missing)}"
    for base in bases:  # the image itself is gone, but its folder is there
        found = os.path.join(base, first)
        if os.sep in rel and os.path.isdir(found):
            return (f"found the folder {found}: "
                    f"{_level_fix(found, os.path.join(image_dir, first))}")
    return ""


def _level_fix(found: str, expected: str) -> str:
    """How to move ``found`` to ``expected`` when the paths differ by one folder level."""
    got, want = Path(found).parts, Path(expected).parts
    i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    if len(got) == len(want) + 1 and got[i + 1:] == want[i:]:
        extra = os.path.join(*got[:i + 1])
        return (f"an extra folder level: move the contents of {extra} up into "
                f"{os.path.dirname(extra)}")
    if len(got) + 1 == len(want) and want[i + 1:] == got[i:]:
        return (f"a missing folder level: the images belong in {os.path.join(*want[:i + 1])}; "
                "create it and move them in")
    return f"the images lie under {os.path.dirname(found)}"


def _check_listed(report: Report, paths: Sequence[str], source: str, dataset_dir: str,
                  image_dir: str) -> None:
    """Problem for the images of ``paths`` (listed by ``source``) that are not on disk."""
    missing = find_missing_images(paths)
    if missing:
        hint = _relocation_hint(missing[0], dataset_dir, image_dir)
        report.problems.append(
            f"{_n(len(missing))} of {_n(len(paths))} images listed in {source} are missing, "
            f"e.g.:\n{_first(missing)}" + (f"\nhint: {hint}" if hint else ""))
        gone = set(missing)
        report.images.extend(p for p in paths if p not in gone)
    else:
        report.images.extend(paths)


def _decode_problem(path: str) -> str:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.convert("RGB")
    except Exception as exc:  # noqa: BLE001  (any decoder error means "unreadable")
        return f"{path} ({type(exc).__name__}: {exc})"
    return ""


def check_images(report: Report, verify_all: bool, sample: int = DEFAULT_SAMPLE,
                 workers: Optional[int] = None) -> None:
    """Decode all of ``report.images`` or an evenly spaced sample; a problem for the bad ones."""
    paths = report.images
    if not paths or (not verify_all and sample <= 0):
        return
    if not verify_all and len(paths) > sample:
        paths = [paths[i * len(paths) // sample] for i in range(sample)]
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        bad = [p for p in pool.map(_decode_problem, paths, chunksize=64) if p]
    what = "images" if verify_all else "sampled images"
    if bad:
        report.problems.append(f"{_n(len(bad))} of {_n(len(paths))} {what} cannot be decoded, "
                               f"e.g.:\n{_first(bad)}\nFix: download or extract them again")
    elif verify_all:
        report.line("images", f"all {_n(len(paths))} images decode")
    else:
        report.line("images", f"{_n(len(paths))} sampled images decode (--verify-images "
                               "decodes all)")


def _compare_official(report: Report, registry: str, split_name: str = "") -> None:
    """The extra line: the counts against the official CoOp data."""
    official = OFFICIAL[registry]
    expected = {k: v for k, v in official._asdict().items() if v is not None}
    sizes = {"train": official.train, "val": official.val, "test": official.test}
    parts = [f"{_n(count)} {k}" for k, count in sizes.items() if count is not None]
    text = f"{' / '.join(parts)} images, {_n(official.classes)} classes"
    if all(report.counts.get(k) == v for k, v in expected.items()):
        report.line("official", f"same sizes as the official CoOp data ({text})")
        return
    what = f"{split_name} is not the official CoOp split" if split_name else \
        "not the official image set"
    report.warnings.append(f"{what} (that has {text}): fine for trying things, but results "
                           "are not comparable with published numbers")


# ---------------------------------------------------------------------------------------------
# The benchmarks
# ---------------------------------------------------------------------------------------------


def _reader(registry: str):
    from disakit.bundle import DATASETS

    return DATASETS[registry]


def _missing_hints(root: str, registry: str) -> List[str]:
    """Where a missing dataset folder may be: another name, inside another folder, spilled."""
    if not os.path.isdir(root):
        return [f"the data folder {root} itself does not exist"]
    reader = _reader(registry)
    folder, image_subdir = reader.dataset_dir, getattr(reader, "image_subdir", "")
    names = {_norm(n) for n in (folder, registry, YAML_NAMES[registry],
                                *ALIASES.get(registry, ()))}
    hints = []
    for child in _subdirs(root):
        path = os.path.join(root, child)
        if image_subdir and child == image_subdir and child not in GENERIC_SUBDIRS:
            hints.append(f"found {path}, which belongs inside {os.path.join(root, folder)}: "
                         f"create that folder and move {child} into it")
        elif _norm(child) in names:
            hints.append(f"found {path}: if it holds {registry}, rename it to {folder} "
                         f"(see {_doc_section(registry)})")
        elif os.path.isdir(os.path.join(path, folder)):
            hints.append(f"found {os.path.join(path, folder)}: pass {path} as the data folder "
                         "(--root, DATA) or move it up one level")
    return hints


def _doc_section(registry: str) -> str:
    return f"DATASETS.md, section 3, {registry}"


def _read_split_file(report: Report, path: str, image_dir: str, label: str):
    """``read_split`` without checking images; its printed warnings become report warnings."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            lists = read_split(path, image_dir, check_images=False, dataset=label)
    except (ValueError, OSError) as exc:
        report.problems.append(str(exc))
        return None
    report.warnings.extend(line[len("Warning: "):] for line in out.getvalue().splitlines()
                           if line.startswith("Warning: "))
    return lists


def _split_counts(report: Report, lists) -> None:
    train, val, test = lists
    report.set_counts(len(train), len(val) if val is not None else None, len(test),
                      len({item.label for item in train}))


def _check_split_dataset(report: Report, root: str, registry: str) -> None:
    """The datasets read from a CoOp split file (Caltech101, ..., UCF101)."""
    reader = _reader(registry)
    dataset_dir = report.folder
    image_dir = os.path.join(dataset_dir, reader.image_subdir) if reader.image_subdir \
        else dataset_dir
    if not os.path.isdir(image_dir):
        report.problems.append(f"image folder {image_dir} not found"
                               + _folder_hint(dataset_dir, reader.image_subdir))
    split_path = os.path.join(dataset_dir, reader.split_file)
    if not os.path.isfile(split_path):
        elsewhere = [p for p in (os.path.join(image_dir, reader.split_file),
                                 os.path.join(root, reader.split_file),
                                 *(os.path.join(dataset_dir, c, reader.split_file)
                                   for c in _subdirs(dataset_dir)))
                     if os.path.isfile(p)]
        hint = f"\nhint: found {elsewhere[0]}: move it to {dataset_dir}" if elsewhere else ""
        report.problems.append(
            f"split file {reader.split_file} not found in {dataset_dir}: download it from the "
            f"CoOp dataset instructions ({_doc_section(registry)}); without it each run makes a "
            f"random split whose results are not comparable with published numbers{hint}")
        return
    lists = _read_split_file(report, split_path, image_dir, registry)
    if lists is None:
        return
    _split_counts(report, lists)
    report.line("split", f"{reader.split_file}: {report.sizes()}")
    paths = [item.impath for items in lists for item in items]
    if os.path.isdir(image_dir):
        _check_listed(report, paths, reader.split_file, dataset_dir, image_dir)
    if not report.problems:
        report.line("on disk", f"all {_n(len(paths))} listed images found")
    _compare_official(report, registry, reader.split_file)


def _require(report: Report, path: str, what: str) -> bool:
    if os.path.exists(path):
        return True
    report.problems.append(f"{what} not found: {path}")
    return False


def _wnid_counts(report: Report, folder: str) -> Dict[str, int]:
    """Files per class folder of ``folder``; keeps one image per folder for the decode sample
    (all of them with ``--verify-images``)."""
    counts = {}
    for wnid in class_folders(folder):
        paths = _file_paths(os.path.join(folder, wnid))
        counts[wnid] = len(paths)
        report.images.extend(paths if report.every_image else paths[:1])
    return counts


def _folder_hint(dataset_dir: str, subpath: str) -> str:
    """Why ``dataset_dir/subpath`` (an image folder) is missing, if it can be seen ('' if not)."""
    for child in _subdirs(dataset_dir):
        if os.path.isdir(os.path.join(dataset_dir, child, subpath)):
            return (f"\nhint: found {os.path.join(dataset_dir, child, subpath)}: an extra "
                    f"folder level; move the contents of {os.path.join(dataset_dir, child)} up "
                    f"into {dataset_dir}")
    top = subpath.split("/")[0]
    for child in _subdirs(dataset_dir):
        if child != top and _norm(child) == _norm(top):
            return f"\nhint: found {os.path.join(dataset_dir, child)}: rename it to {top}"
    children = [c for c in _subdirs(dataset_dir) if c != FEWSHOT_DIR]
    if len(children) >= 2:
        shown = ", ".join(children[:3]) + (", ..." if len(children) > 3 else "")
        return (f"\nhint: {dataset_dir} holds {_n(len(children))} folders ({shown}): a missing "
                f"folder level? They belong in {os.path.join(dataset_dir, subpath)}")
    return ""


def _check_imagenet(report: Report) -> None:
    dataset_dir = report.folder
    classnames_ok = _require(report, os.path.join(dataset_dir, "classnames.txt"),
                             "classnames.txt (from the CoOp dataset instructions)")
    folders = {}
    for sub in ("train", "val"):
        path = os.path.join(dataset_dir, "images", sub)
        if _require(report, path, f"image folder images/{sub}"):
            folders[sub] = _wnid_counts(report, path)
        else:
            report.problems[-1] += _folder_hint(dataset_dir, f"images/{sub}")
    if set(folders) != {"train", "val"}:
        return
    train, val = folders["train"], folders["val"]
    if set(train) != set(val):
        flat = _count_files(os.path.join(dataset_dir, "images", "val"))
        report.problems.append(
            f"images/train has {_n(len(train))} wnid folders, images/val {_n(len(val))}; they "
            "must be the same" + (f" ({_n(flat)} images lie directly in images/val: sort the "
                                  "flat validation archive into <wnid>/ folders, DATASETS.md "
                                  "'ImageNet')" if flat else ""))
    if classnames_ok:
        known = read_classnames(os.path.join(dataset_dir, "classnames.txt"))
        unknown = sorted(w for w in train if w not in known)
        if unknown:
            report.problems.append(f"{_n(len(unknown))} wnid folder(s) missing from "
                                   f"classnames.txt, e.g.:\n{_first(unknown)}")
    empty = sorted(w for w, n in {**train, **val}.items() if n == 0)
    if empty:
        report.problems.append(f"{_n(len(empty))} empty wnid folder(s), e.g.:\n{_first(empty)}")
    report.set_counts(sum(train.values()), None, sum(val.values()), len(train))
    report.line("counts", f"train {_n(report.counts['train'])} / test (= val) "
                          f"{_n(report.counts['test'])} images, {_n(len(train))} classes")
    _compare_official(report, "ImageNet")


def _check_fgvc(report: Report) -> None:
    dataset_dir = report.folder
    image_dir = os.path.join(dataset_dir, "images")
    variants_file = os.path.join(dataset_dir, "variants.txt")
    _require(report, image_dir, "image folder")
    lists = {s: os.path.join(dataset_dir, f"images_variant_{s}.txt") for s in ("train", "val",
                                                                               "test")}
    present = [_require(report, p, f"list file images_variant_{s}.txt")
               for s, p in lists.items()]
    if not (_require(report, variants_file, "variants.txt") and all(present)):
        for child in _subdirs(dataset_dir):
            if os.path.isfile(os.path.join(dataset_dir, child, "variants.txt")):
                report.problems.append(
                    f"found {os.path.join(dataset_dir, child, 'variants.txt')}: an extra folder "
                    f"level; the data/ folder of the archive must be {dataset_dir} itself")
        return
    variants = set(read_text_lines(variants_file))
    counts, paths, unknown = {}, [], []
    for split, path in lists.items():
        lines = read_text_lines(path)
        counts[split] = len(lines)
        for line in lines:
            image_id, _, variant = line.partition(" ")
            paths.append(os.path.join(image_dir, image_id + ".jpg"))
            if variant not in variants:
                unknown.append(f"{os.path.basename(path)}: {variant!r}")
    if unknown:
        report.problems.append(f"{_n(len(unknown))} list line(s) name a variant that is not in "
                               f"variants.txt, e.g.:\n{_first(unknown)}")
    report.set_counts(counts["train"], counts["val"], counts["test"], len(variants))
    report.line("split", f"official lists images_variant_*.txt: {report.sizes()}")
    _check_listed(report, paths, "images_variant_*.txt", dataset_dir, image_dir)
    _compare_official(report, "FGVCAircraft")


def _check_variant(report: Report, registry: str) -> None:
    reader = _reader(registry)
    dataset_dir = report.folder
    image_dir = os.path.join(dataset_dir, reader.image_subdir)
    has_names = _require(report, os.path.join(dataset_dir, "classnames.txt"),
                         "classnames.txt (a copy of imagenet/classnames.txt)")
    if not _require(report, image_dir, "image folder"):
        if registry == "ImageNetSketch" and os.path.isdir(os.path.join(dataset_dir, "sketch")):
            report.problems[-1] += (f"\nhint: found {os.path.join(dataset_dir, 'sketch')} "
                                    "(the archive's folder): rename it to images")
        else:
            report.problems[-1] += _folder_hint(dataset_dir, reader.image_subdir)
        return
    if not has_names:
        return
    classnames = read_classnames(os.path.join(dataset_dir, "classnames.txt"))
    if registry == "ImageNetV2":
        wanted = [str(i) for i in range(len(classnames))]
        present = set(class_folders(image_dir))
        absent = [f for f in wanted if f not in present]
        if absent:
            report.problems.append(f"{_n(len(absent))} of the {_n(len(wanted))} label folders "
                                   f"0..{len(wanted) - 1} are missing in {image_dir}, e.g.:\n"
                                   f"{_first(absent)}")
        folders = [f for f in wanted if f in present]
    else:
        folders = class_folders(image_dir)
        unknown = [f for f in folders if f not in classnames]
        if unknown:
            report.problems.append(f"{_n(len(unknown))} folder(s) of {image_dir} are not wnids "
                                   f"of classnames.txt, e.g.:\n{_first(unknown)}")
    counts = _wnid_counts(report, image_dir)
    total = sum(counts.get(f, 0) for f in folders)
    report.set_counts(None, None, total, len(folders))
    report.line("counts", f"test {_n(total)} images, {_n(len(folders))} classes")
    _compare_official(report, registry)


def check_benchmark(root: str, registry: str, *, verify_images: bool = False,
                    sample: int = DEFAULT_SAMPLE, name: str = "") -> Report:
    """Check benchmark ``registry`` (e.g. ``EuroSAT``) under the data folder ``root``."""
    root = os.path.abspath(os.path.expanduser(root))
    reader = _reader(registry)
    report = Report(name or YAML_NAMES[registry], registry,
                    os.path.join(root, reader.dataset_dir), every_image=verify_images)
    if not os.path.isdir(report.folder):
        report.found = False
        report.hints = _missing_hints(root, registry)
        return report
    if registry == "ImageNet":
        _check_imagenet(report)
    elif registry == "FGVCAircraft":
        _check_fgvc(report)
    elif registry in TEST_ONLY:
        _check_variant(report, registry)
    else:
        _check_split_dataset(report, root, registry)
    check_images(report, verify_images, sample)
    return report


# ---------------------------------------------------------------------------------------------
# ImageFolder (your own data)
# ---------------------------------------------------------------------------------------------


def _class_folder_problems(report: Report, parent: str) -> Dict[str, int]:
    """Per class folder of ``parent``: its image count; problems for empty ones (and the
    extra-folder-level case), warnings for ignored files and sub-folders."""
    counts: Dict[str, int] = {}
    ignored_files: List[str] = []
    nested: List[str] = []
    for folder in class_folders(parent):
        path = os.path.join(parent, folder)
        images = image_files(path)
        counts[folder] = len(images)
        report.images.extend(os.path.join(path, name) for name in images)
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    nested.append(entry.path)
                elif entry.name not in images:
                    ignored_files.append(entry.path)
    empty = [f for f, n in counts.items() if n == 0]
    deeper = [f for f in empty if any(image_files(p) or class_folders(p)
                                      for p in (os.path.join(parent, f, c)
                                                for c in class_folders(os.path.join(parent, f))))]
    if deeper and len(counts) == 1:
        inner = os.path.join(parent, deeper[0])
        report.problems.append(
            f"an extra folder level: {inner} holds the class folders. Fix: move them up into "
            f"{parent}, or set DATASET.DIR to that folder")
        return {}
    if empty:
        report.problems.append(f"{_n(len(empty))} class folder(s) with no images directly in "
                               f"them, e.g.:\n{_first([os.path.join(parent, f) for f in empty])}")
    if nested:
        report.warnings.append(f"{_n(len(nested))} sub-folder(s) inside class folders are not "
                               f"read (images must lie directly in their class folder), e.g.:\n"
                               f"{_first(sorted(nested))}")
    if ignored_files:
        report.warnings.append(f"{_n(len(ignored_files))} file(s) without an image extension "
                               f"are ignored, e.g.:\n{_first(sorted(ignored_files))}")
    return counts


def _check_classnames_file(report: Report, settings: ImageFolderSettings,
                           classes: Iterable[str]) -> None:
    path = settings.classnames_path
    if not os.path.isfile(path):
        report.line("names", f"no {CLASSNAMES_FILE}: class names are the folder names")
        return
    names = read_class_names(path)
    classes = list(classes)
    unnamed = [c for c in classes if c not in names]
    unused = sorted(set(names) - set(classes))
    report.line("names", f"{CLASSNAMES_FILE} names {_n(len(classes) - len(unnamed))} of "
                         f"{_n(len(classes))} classes")
    if unused:
        report.warnings.append(f"{CLASSNAMES_FILE} names {_n(len(unused))} folder(s) that are "
                               f"not classes here, e.g.:\n{_first(unused)}")
    if unnamed:
        report.warnings.append(f"{_n(len(unnamed))} class folder(s) are not in "
                               f"{CLASSNAMES_FILE} and keep their folder name, e.g.:\n"
                               f"{_first(unnamed)}")


def check_imagefolder(root: str, settings: ImageFolderSettings, *, name: str,
                      verify_images: bool = False, sample: int = DEFAULT_SAMPLE) -> Report:
    """Check an ImageFolder dataset (from its YAML's settings) without writing anything."""
    report = Report(name, "ImageFolder", settings.dataset_dir)
    if not os.path.isdir(settings.dataset_dir):
        report.found = False
        report.hints = [f"DATASET.DIR of {name} is {settings.dataset_dir} relative to the data "
                        f"folder {root}; set --root/DATA or DATASET.DIR"]
        return report
    source = ImageFolderSource(settings, label=f"ImageFolder '{settings.name}'")
    layout = source.layout()
    split_path = source.split_path()
    if layout == "split file":
        report.line("layout", f"split file {split_path}")
    elif layout == "folders":
        subsets = subset_folders(settings.dataset_dir)
        report.line("layout", f"{' + '.join(f'{s}/' for s in subsets)} folders of class folders")
        for path in subsets.values():
            _class_folder_problems(report, path)
        _check_classnames_file(report, settings, class_folders(subsets["train"]))
    else:
        state = "present" if os.path.exists(split_path) else "made by the first run"
        report.line("layout", f"class folders; split {os.path.basename(split_path)} ({state}; "
                              f"{settings.describe_fractions()})")
        per_class = _class_folder_problems(report, settings.dataset_dir)
        if not per_class and not report.problems:
            images = image_files(settings.dataset_dir)
            report.problems.append(
                f"no class folders in {settings.dataset_dir}"
                + (f" ({_n(len(images))} images lie directly in it)" if images else "")
                + ". Fix: one sub-folder per class, named after the class")
        if per_class:
            _check_classnames_file(report, settings, per_class)
    if report.problems:
        return report
    on_disk = list(report.images)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            lists = source.load(check_images=False, save=False)
    except (ValueError, OSError) as exc:
        report.problems.append(str(exc))
        return report
    report.warnings.extend(line[len("Warning: "):] for line in out.getvalue().splitlines()
                           if line.startswith("Warning: "))
    _split_counts(report, lists)
    val_note = "" if lists[1] is not None else " (test serves as val)"
    report.line("split", f"{report.sizes()}{val_note}")
    report.images = []
    listed = [item.impath for items in lists if items is not None for item in items]
    if split_path and os.path.exists(split_path):
        _check_listed(report, listed, os.path.basename(split_path), settings.dataset_dir,
                      settings.dataset_dir)
        if layout == "generated":
            unlisted = sorted(set(on_disk) - set(listed))
            if unlisted:
                report.warnings.append(
                    f"{_n(len(unlisted))} image(s) in the class folders are not in "
                    f"{os.path.basename(split_path)} (added after it was made?), e.g.:\n"
                    f"{_first(unlisted)}\nFix: delete it (and split_fewshot/) to split again")
    else:
        report.images = listed
    if report.counts.get("classes", 0) < 2:
        report.warnings.append("fewer than 2 classes: base-to-novel runs need at least 2")
    short = _short_classes(lists[0])
    if short:
        report.line("few-shot", f"{_n(short)} class(es) have fewer than {FEW_SHOT_K} training "
                                f"images: a {FEW_SHOT_K}-shot run uses all of theirs")
    check_images(report, verify_images, sample)
    return report


def _short_classes(train) -> int:
    counts: Dict[int, int] = {}
    for item in train:
        counts[item.label] = counts.get(item.label, 0) + 1
    return sum(1 for n in counts.values() if n < FEW_SHOT_K)


# ---------------------------------------------------------------------------------------------
# Requests and the command line
# ---------------------------------------------------------------------------------------------


def _configs_dir() -> Path:
    import disakit

    return (Path(disakit.__file__).resolve().parent / "configs" / "datasets").resolve()


def _benchmark(name: str) -> Optional[str]:
    for registry, stem in YAML_NAMES.items():
        if name.lower() in (registry.lower(), stem):
            return registry
    return None


def _yaml_cfg(path: Path, root: str):
    from disakit.dassl_api import get_cfg_default
    from disakit.trainers.config import extend_cfg, merge_checked

    cfg = get_cfg_default()
    extend_cfg(cfg)
    merge_checked(cfg, str(path), f"dataset YAML {path}")
    cfg.DATASET.ROOT = root
    return cfg


def resolve(name: str) -> Tuple[str, Optional[str], Optional[Path]]:
    """``(display name, benchmark registry name or None, YAML path or None)`` for a request:
    a benchmark (registry or YAML name), a ``configs/datasets`` YAML stem, or a YAML path."""
    registry = _benchmark(name)
    if registry and not name.endswith((".yaml", ".yml")):
        return YAML_NAMES[registry], registry, None
    path = Path(name).expanduser()
    if not path.suffix:
        path = _configs_dir() / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in _configs_dir().glob("*.yaml"))
        raise ValueError(f"unknown dataset {name!r}: not a benchmark, not "
                         f"configs/datasets/{name}.yaml and not a YAML file; known: "
                         f"{', '.join(known)}")
    return (path.stem if path.resolve().parent == _configs_dir() else str(path)), None, path


def check_one(root: str, name: str, *, verify_images: bool = False,
              sample: int = DEFAULT_SAMPLE) -> Report:
    """Check one requested dataset (:func:`resolve`); a bad YAML is a problem in the report."""
    display, registry, path = resolve(name)
    if registry:
        return check_benchmark(root, registry, verify_images=verify_images, sample=sample,
                               name=display)
    assert path is not None  # resolve() names a YAML file whenever it names no benchmark
    try:
        cfg = _yaml_cfg(path, root)
        dataset = cfg.DATASET.NAME
        if dataset != "ImageFolder":
            benchmark = _benchmark(dataset)
            if benchmark:
                return check_benchmark(root, benchmark, verify_images=verify_images,
                                       sample=sample, name=display)
            raise ValueError(f"{path} names dataset {dataset!r}; check-data knows the 15 "
                             "benchmarks and ImageFolder")
        settings = ImageFolderSettings.from_cfg(cfg)
    except (ValueError, OSError) as exc:
        report = Report(display, "ImageFolder", str(path))
        report.problems.append(str(exc))
        return report
    return check_imagefolder(root, settings, name=display, verify_images=verify_images,
                             sample=sample)


def check_data(root: str, names: Optional[Sequence[str]] = None, **kwargs) -> List[Report]:
    """Reports for ``names`` (default: the 15 benchmarks)."""
    return [check_one(root, name, **kwargs) for name in (names or list(YAML_NAMES))]


def build_parser(prog: str = "python -m disakit check-data") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Check a data folder before a run: for each dataset, found or "
        "missing, layout problems, and the image counts against the split file and the "
        "official CoOp sizes (DATASETS.md, section 4). Writes nothing.")
    parser.add_argument("root", help="the data folder (what you pass as --root / DATA)")
    parser.add_argument("--datasets", nargs="+", metavar="NAME",
                        help="benchmarks (registry or YAML names, or 'all'), names of your "
                             "configs/datasets/<name>.yaml (e.g. an ImageFolder dataset), or "
                             "YAML paths; default: the 15 benchmarks")
    parser.add_argument("--verify-images", action="store_true",
                        help="decode every image (slow); by default images are checked for "
                             f"existence and {DEFAULT_SAMPLE} per dataset are decoded")
    parser.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                        help="images decoded per dataset without --verify-images (0: none)")
    parser.add_argument("--strict", action="store_true",
                        help="count warnings (e.g. a split that is not the official one) as "
                             "not ready")
    return parser


def main(argv: Optional[Sequence[str]] = None, prog: str = "python -m disakit check-data") -> int:
    args = build_parser(prog).parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        print(f"Error: the data folder {root} does not exist", file=sys.stderr)
        return 1
    requested = args.datasets and "all" not in args.datasets
    names = args.datasets if requested else list(YAML_NAMES)
    try:
        [resolve(name) for name in names]
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    mode = "all images decoded" if args.verify_images else \
        f"images checked for existence, {args.sample} per dataset decoded"
    print(f"Checking {len(names)} dataset(s) under {root} ({mode})\n", flush=True)
    reports = []
    for name in names:
        report = check_one(root, name, verify_images=args.verify_images, sample=args.sample)
        reports.append(report)
        if report.found or requested:
            print(format_report(report, args.strict) + "\n", flush=True)
    missing = [r.name for r in reports if not r.found]
    if missing and not requested:
        print(f"missing ({len(missing)}): {', '.join(missing)}  (only the datasets you run are "
              "needed; --datasets NAME ... shows where each is expected)\n")
    ready = [r.name for r in reports if r.ready(args.strict)]
    not_ready = [r.name for r in reports if r.found and not r.ready(args.strict)]
    print(f"Summary: {len(ready)} ready, {len(not_ready)} not ready, {len(missing)} missing"
          + (f"; not ready: {', '.join(not_ready)}" if not_ready else ""))
    if requested:
        return 0 if len(ready) == len(reports) else 1
    if not ready and not not_ready:
        print(f"No dataset found under {root}: is it the folder that holds them (DATASETS.md)?")
        return 1
    return 1 if not_ready else 0


if __name__ == "__main__":
    sys.exit(main())
