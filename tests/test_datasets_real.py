"""The readers on the real EuroSAT images and the real CoOp split files (skipped without them).

``../shared/data`` (next to the repository) is a development copy; nothing is written into it.
The split files are read through the readers themselves with only the image check switched
off (``CoOpDataset.check_images``), since the other datasets' images are not available.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from disakit.datasets import load_dataset
from disakit.datasets.base import CoOpDataset
from disakit.datasets.synthetic import dataset_folder

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# registry name: (train, val, test, classes, base test, new test, label-0 name)  (docs/data.md)
SPLIT_FACTS = {
    "Caltech101": (4128, 1649, 2465, 100, 1549, 916, "face"),
    "DescribableTextures": (2820, 1128, 1692, 47, 864, 828, "banded"),
    "EuroSAT": (13500, 5400, 8100, 10, 4200, 3900, "Annual Crop Land"),
    "OxfordFlowers": (4093, 1633, 2463, 102, 1053, 1410, "pink primrose"),
    "OxfordPets": (2944, 736, 3669, 37, 1881, 1788, "abyssinian"),
    "StanfordCars": (6509, 1635, 8041, 196, 4002, 4039, "2000 AM General Hummer SUV"),
    "UCF101": (7639, 1898, 3783, 101, 1934, 1849, "Apply_Eye_Makeup"),
}
# Base/new train/val sizes per dataset (also listed in docs/data.md).
BASE_NEW_TRAIN_VAL = {
    "Caltech101": ((2594, 1036), (1534, 613)),
    "OxfordPets": ((1508, 377), (1436, 359)),
    "StanfordCars": ((3240, 812), (3269, 823)),
    "OxfordFlowers": ((1744, 696), (2349, 937)),
    "DescribableTextures": ((1440, 576), (1380, 552)),
    "EuroSAT": ((7000, 2800), (6500, 2600)),
    "UCF101": ((3926, 975), (3713, 923)),
}


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not available (development data only)")
    return path


@pytest.fixture(scope="module")
def eurosat_root(tmp_path_factory):
    """A root whose eurosat/ links the shared images, so caches are written to a temp folder."""
    source = require(SHARED_DATA / "eurosat")
    root = tmp_path_factory.mktemp("real")
    (root / "eurosat").mkdir()
    (root / "eurosat" / "2750").symlink_to(source / "2750")
    shutil.copy(source / "split_zhou_EuroSAT.json", root / "eurosat")
    return root


def test_real_eurosat_reads_with_images(eurosat_root):
    ds = load_dataset("eurosat", eurosat_root)
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (13500, 5400, 8100)
    assert ds.classnames == [
        "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
        "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings",
        "River", "Sea or Lake",
    ]
    assert ds.train_x[0].impath.endswith("eurosat/2750/AnnualCrop/AnnualCrop_1381.jpg")


def test_real_eurosat_few_shot_base(eurosat_root):
    ds = load_dataset("eurosat", eurosat_root, num_shots=16, seed=1, subsample="base")
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (5 * 16, 5 * 4, 4200)


@pytest.fixture
def split_only_root(tmp_path, monkeypatch):
    """Place one real split file in an otherwise empty dataset folder; skip the image check."""
    monkeypatch.setattr(CoOpDataset, "check_images", False)

    def place(name: str) -> Path:
        source = require(SHARED_DATA / "splits" / f"split_zhou_{name}.json")
        folder = tmp_path / dataset_folder(name)
        folder.mkdir(exist_ok=True)
        shutil.copy(source, folder)
        return tmp_path

    return place


@pytest.mark.parametrize("name", list(SPLIT_FACTS))
def test_real_split_files_parse_with_published_counts(split_only_root, name):
    n_train, n_val, n_test, n_classes, base_test, new_test, first = SPLIT_FACTS[name]
    root = split_only_root(name)
    full = load_dataset(name, root)
    assert (len(full.train_x), len(full.val), len(full.test)) == (n_train, n_val, n_test)
    assert full.num_classes == n_classes and full.lab2cname[0] == first
    base = load_dataset(name, root, subsample="base")
    new = load_dataset(name, root, subsample="new")
    assert (len(base.test), len(new.test)) == (base_test, new_test)
    assert (len(base.train_x), len(base.val)) == BASE_NEW_TRAIN_VAL[name][0]
    assert (len(new.train_x), len(new.val)) == BASE_NEW_TRAIN_VAL[name][1]
    assert base.classnames + new.classnames == full.classnames


def test_real_caltech_label_order(split_only_root):
    ds = load_dataset("caltech101", split_only_root("Caltech101"))
    assert ds.classnames[:5] == ["face", "leopard", "motorbike", "accordion", "airplane"]
    assert ds.classnames[-1] == "yin_yang"


def test_real_flowers_names_match_cat_to_name(split_only_root):
    import json

    cat_to_name = json.loads(require(SHARED_DATA / "splits" / "cat_to_name.json").read_text())
    ds = load_dataset("oxford_flowers", split_only_root("OxfordFlowers"))
    assert ds.classnames == [cat_to_name[str(i + 1)] for i in range(102)]
