"""The 15 benchmark readers on generated copies of their upstream layouts.

Every expectation comes from the generator's hand-written class tables and per-class sizes
(``datasets.synthetic``), not from the readers' rules, so the rules are checked independently.
Sizes: 5 classes, (train, val, test) = (4, 2, 3) images per class.
"""
from __future__ import annotations

import random
from collections import Counter

import pytest

from disakit.datasets import TEST_ONLY, YAML_NAMES, load_dataset
from disakit.datasets.synthetic import expected_classnames, label_of_image, make_all, make_dataset

N_CLASSES = 5
PER_CLASS = (4, 2, 3)
TRAINING = [name for name in YAML_NAMES if name not in TEST_ONLY]
REBUILDABLE = [n for n in TRAINING if n not in ("ImageNet", "FGVCAircraft")]
# Rebuilt from raw annotations: the official train lists hold train+val = 6 images per class
# (80/20 -> 5/1); folder-per-class sets hold 9 (50/20/30 -> round(4.5)=4 / round(1.8)=2 / 3).
TRAINVAL_SPLITTERS = ("OxfordPets", "StanfordCars", "SUN397", "UCF101")


@pytest.fixture(scope="module")
def json_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data_json")
    make_all(root, num_classes=N_CLASSES, per_class=PER_CLASS)
    return root


def expected_sizes(name: str, with_json: bool = True):
    n_train, n_val, n_test = PER_CLASS
    if name in TEST_ONLY:
        return n_test, 0, n_test
    if name == "ImageNet":
        return n_train, n_test, n_test  # val = test
    if not with_json and name in TRAINVAL_SPLITTERS:
        return 5, 1, n_test
    return n_train, n_val, n_test


def check_items(items, names):
    """Every item's class name matches its label and its image shows that label's colour."""
    for item in items:
        assert item.classname == names[item.label], item.impath
        assert label_of_image(item.impath, len(names)) == item.label, item.impath


def check_dataset(ds, name, with_json=True):
    names = expected_classnames(name, N_CLASSES)
    assert ds.classnames == names
    assert ds.num_classes == N_CLASSES
    sizes = expected_sizes(name, with_json)
    assert (len(ds.train_x), len(ds.val or []), len(ds.test)) == tuple(N_CLASSES * s for s in sizes)
    for items in (ds.train_x, ds.val or [], ds.test):
        check_items(items, names)
        assert sorted(Counter(i.label for i in items)) == (list(range(N_CLASSES)) if items else [])
    assert all(item.domain == 0 for item in ds.train_x)


@pytest.mark.parametrize("name", list(YAML_NAMES))
def test_reader_reads_generated_layout(json_root, name):
    ds = load_dataset(name, json_root)
    check_dataset(ds, name)
    if name == "ImageNet":
        assert ds.val is ds.test
    if name in TEST_ONLY:
        assert ds.val is None and ds.train_x is ds.test


@pytest.mark.parametrize("name", TEST_ONLY)
def test_test_only_ignore_shots_and_subsample(json_root, name):
    ds = load_dataset(name, json_root, num_shots=1, seed=1, subsample="new")
    assert len(ds.train_x) == len(ds.test) == N_CLASSES * PER_CLASS[2]
    assert ds.classnames == expected_classnames(name, N_CLASSES)
    assert not (json_root / "imagenet-sketch" / "split_fewshot").exists()


def test_imagenet_a_uses_its_own_label_space(json_root):
    """A/R hold a subset of ImageNet's wnids: labels 0..n-1 over their sorted folders."""
    ds = load_dataset("imagenet_a", json_root)
    full = expected_classnames("ImageNet", 2 * N_CLASSES)
    assert ds.classnames == full[1::2]
    assert sorted({i.label for i in ds.test}) == list(range(N_CLASSES))


@pytest.mark.parametrize("name", REBUILDABLE + ["FGVCAircraft"])
def test_split_rebuilt_from_raw_annotations(tmp_path, name):
    make_dataset(name, tmp_path, num_classes=N_CLASSES, per_class=PER_CLASS,
                 with_split_json=False)
    random.seed(1)
    ds = load_dataset(name, tmp_path)
    check_dataset(ds, name, with_json=False)
    again = load_dataset(name, tmp_path)  # reads the split file just written
    assert [(i.impath, i.label) for i in again.test] == [(i.impath, i.label) for i in ds.test]
    assert [i.impath for i in again.train_x] == [i.impath for i in ds.train_x]


def test_caltech_rebuild_ignores_background_folders(tmp_path):
    make_dataset("caltech101", tmp_path, with_split_json=False)
    ds = load_dataset("caltech101", tmp_path)
    paths = [i.impath for i in ds.train_x + ds.val + ds.test]
    assert not any("BACKGROUND_Google" in p or "Faces_easy" in p for p in paths)
    assert ds.lab2cname[0] == "face" and ds.lab2cname[4] == "airplane"


def test_rebuilt_split_depends_only_on_seed(tmp_path):
    make_dataset("dtd", tmp_path / "a", with_split_json=False)
    make_dataset("dtd", tmp_path / "b", with_split_json=False)
    random.seed(3)
    first = load_dataset("dtd", tmp_path / "a")
    random.seed(3)
    second = load_dataset("dtd", tmp_path / "b")
    strip = lambda ds: [i.impath.split("/dtd/")[1] for i in ds.train_x]  # noqa: E731
    assert strip(first) == strip(second)


@pytest.mark.parametrize("name", TRAINING)
def test_base_and_new_halves(json_root, name):
    names = expected_classnames(name, N_CLASSES)
    n_test = PER_CLASS[2]
    base = load_dataset(name, json_root, subsample="base")
    new = load_dataset(name, json_root, subsample="new")
    assert base.classnames == names[:3] and new.classnames == names[3:]  # ceil(5/2) = 3
    assert (len(base.test), len(new.test)) == (3 * n_test, 2 * n_test)
    assert sorted({i.label for i in new.test}) == [0, 1]
    for ds, offset in ((base, 0), (new, 3)):
        for item in ds.test + (ds.val or []):
            assert label_of_image(item.impath, N_CLASSES) == item.label + offset
    if name == "ImageNet":
        assert new.val is new.test


@pytest.mark.parametrize("name", TRAINING)
def test_few_shot_subsets(tmp_path, name):
    make_dataset(name, tmp_path, num_classes=N_CLASSES, per_class=PER_CLASS)
    full = load_dataset(name, tmp_path)
    ds = load_dataset(name, tmp_path, num_shots=2, seed=1)
    assert Counter(i.label for i in ds.train_x) == {lab: 2 for lab in range(N_CLASSES)}
    assert {i.impath for i in ds.train_x} <= {i.impath for i in full.train_x}
    if name == "ImageNet":
        assert ds.val is ds.test and len(ds.test) == len(full.test)
    else:  # min(K, 4) = 2 per class
        assert Counter(i.label for i in ds.val) == {lab: 2 for lab in range(N_CLASSES)}
        assert {i.impath for i in ds.val} <= {i.impath for i in full.val}
    base = load_dataset(name, tmp_path, num_shots=2, seed=1, subsample="base")
    assert len(base.train_x) == 3 * 2
    assert {i.impath for i in base.train_x} < {i.impath for i in ds.train_x}


def test_few_shot_val_is_capped_at_four(tmp_path):
    make_dataset("eurosat", tmp_path, num_classes=3, per_class=(8, 6, 3))
    ds = load_dataset("eurosat", tmp_path, num_shots=8, seed=2)
    assert len(ds.train_x) == 3 * 8 and len(ds.val) == 3 * 4


def test_yaml_configs_name_the_registered_readers():
    from pathlib import Path

    import yaml

    from disakit.dassl_api import DATASET_REGISTRY

    folder = Path(__file__).resolve().parents[1] / "configs" / "datasets"
    for registry, stem in YAML_NAMES.items():
        content = yaml.safe_load((folder / f"{stem}.yaml").read_text())
        assert content == {"DATASET": {"NAME": registry}}
        assert registry in DATASET_REGISTRY.registered_names()
