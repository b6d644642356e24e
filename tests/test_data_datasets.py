"""Datum, DatasetBase, few-shot sampling and the dataset registry of dasslite.data."""
from __future__ import annotations

import pickle
import random

import pytest
from PIL import Image

from disakit.dasslite.config import get_cfg_default
from disakit.dasslite.data.datasets import (
    DATASET_REGISTRY,
    DatasetBase,
    Datum,
    build_dataset,
    make_datum_unchecked,
)


@pytest.fixture
def impath(tmp_path):
    path = tmp_path / "img.png"
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return str(path)


def make_items(impath, labels, domain=0):
    return [Datum(impath=impath, label=lab, domain=domain, classname=f"c{lab}") for lab in labels]


def interleaved_labels(n_labels=5, per_label=12):
    """Labels whose first-appearance order (3, 0, 4, 1, 2) is not sorted order."""
    order = [3, 0, 4, 1, 2][:n_labels]
    return [order[i % n_labels] for i in range(n_labels * per_label)]


def dassl_reference(sources, k, seed):
    """Dassl's algorithm, written out: per source, per label in first-appearance order."""
    random.seed(seed)
    out = []
    for source in sources:
        by_label = {}
        for item in source:
            by_label.setdefault(item.label, []).append(item)
        picked = []
        for items in by_label.values():
            picked.extend(random.sample(items, k))
        out.append(picked)
    return out


# ---- Datum ---------------------------------------------------------------------------------


def test_datum_properties(impath):
    d = Datum(impath=impath, label=3, domain=1, classname="cat")
    assert (d.impath, d.label, d.domain, d.classname) == (impath, 3, 1, "cat")


def test_datum_properties_are_read_only(impath):
    with pytest.raises(AttributeError):
        Datum(impath=impath).label = 2


def test_datum_rejects_missing_file(tmp_path):
    with pytest.raises(AssertionError, match="nope.png"), pytest.warns(UserWarning):
        Datum(impath=str(tmp_path / "nope.png"))


def test_datum_rejects_non_str_path(tmp_path):
    with pytest.raises(AssertionError):
        Datum(impath=tmp_path / "img.png")


def test_fast_path_datum_equals_normal_datum_and_pickles_alike(impath):
    normal = Datum(impath=impath, label=2, domain=1, classname="dog")
    fast = Datum.from_fields(impath, 2, 1, "dog")
    alias = make_datum_unchecked(impath, 2, 1, "dog")
    assert type(fast) is Datum and vars(fast) == vars(normal) == vars(alias)
    assert vars(fast) == {"_impath": impath, "_label": 2, "_domain": 1, "_classname": "dog"}
    assert vars(pickle.loads(pickle.dumps(fast))) == vars(pickle.loads(pickle.dumps(normal)))


def test_fast_path_does_not_stat_the_file(tmp_path):
    d = Datum.from_fields(str(tmp_path / "absent.jpg"), 1, 0, "x")
    assert d.impath.endswith("absent.jpg") and d.label == 1


# ---- DatasetBase ---------------------------------------------------------------------------


def test_class_info_comes_from_train_x(impath):
    train = make_items(impath, [2, 0, 2, 5])
    test = make_items(impath, [7, 8])
    ds = DatasetBase(train_x=train, val=None, test=test)
    assert ds.num_classes == 6
    assert ds.lab2cname == {0: "c0", 2: "c2", 5: "c5"}
    assert ds.classnames == ["c0", "c2", "c5"]
    assert ds.train_x is train and ds.test is test and ds.val is None and ds.train_u is None


def test_class_attributes_and_static_helpers(impath):
    items = make_items(impath, [1, 0])
    assert DatasetBase.dataset_dir == "" and DatasetBase.domains == []
    assert DatasetBase.get_num_classes(items) == 2
    assert DatasetBase.get_lab2cname(items) == ({0: "c0", 1: "c1"}, ["c0", "c1"])


def test_empty_train_x_is_a_clear_error():
    with pytest.raises(ValueError, match="train_x is empty"):
        DatasetBase(train_x=[], test=[])


def test_split_by_label_and_domain_keep_first_appearance_order(impath):
    items = make_items(impath, [3, 1, 3, 2, 1])
    groups = DatasetBase.split_dataset_by_label(items)
    assert list(groups) == [3, 1, 2]
    assert groups[3] == [items[0], items[2]] and groups[1] == [items[1], items[4]]
    mixed = make_items(impath, [0], domain=1) + make_items(impath, [0], domain=0)
    assert list(DatasetBase.split_dataset_by_domain(mixed)) == [1, 0]


def test_input_domain_validation(impath):
    class TwoDomains(DatasetBase):
        domains = ["photo", "sketch"]

    ds = TwoDomains(train_x=make_items(impath, [0]))
    ds.check_input_domains(["photo"], ["sketch"])
    with pytest.raises(ValueError, match=r"\[cartoon\]"):
        ds.is_input_domain_valid(["cartoon"])


# ---- few-shot sampling ---------------------------------------------------------------------


@pytest.fixture
def base(impath):
    return DatasetBase(train_x=make_items(impath, [0]))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fewshot_matches_dassl_reference(base, impath, seed):
    items = make_items(impath, interleaved_labels())
    random.seed(seed)
    ours = base.generate_fewshot_dataset(items, num_shots=4)
    assert ours == dassl_reference([items], 4, seed)[0]


def test_fewshot_is_deterministic_per_seed_and_differs_across_seeds(base, impath):
    items = make_items(impath, interleaved_labels())
    draws = []
    for seed in (1, 1, 2):
        random.seed(seed)
        draws.append(base.generate_fewshot_dataset(items, num_shots=4))
    assert draws[0] == draws[1] and draws[0] != draws[2]


def test_fewshot_two_sources_continue_the_rng_stream(base, impath, capsys):
    train = make_items(impath, interleaved_labels())
    val = make_items(impath, interleaved_labels(per_label=6))
    random.seed(7)
    ours = base.generate_fewshot_dataset(train, val, num_shots=3)
    assert ours == dassl_reference([train, val], 3, 7)
    assert capsys.readouterr().out == "Creating a 3-shot dataset\n"


def test_fewshot_repeat_uses_random_choices(base, impath):
    items = make_items(impath, [0, 1, 1, 0, 1])  # label 0 has 2 items, label 1 has 3
    random.seed(5)
    ours = base.generate_fewshot_dataset(items, num_shots=4, repeat=True)
    random.seed(5)
    expected = random.choices([items[0], items[3]], k=4) + random.choices(
        [items[1], items[2], items[4]], k=4
    )
    assert ours == expected


def test_fewshot_without_repeat_keeps_all_items_of_small_labels(base, impath):
    items = make_items(impath, [0, 1, 1, 0, 1, 1, 1, 1])  # label 0 has 2 items, label 1 has 6
    random.seed(9)
    ours = base.generate_fewshot_dataset(items, num_shots=4)
    random.seed(9)
    label1 = [it for it in items if it.label == 1]
    assert ours == [items[0], items[3]] + random.sample(label1, 4)


def test_fewshot_disabled_returns_inputs_unchanged(base, impath, capsys):
    train, val = make_items(impath, [0, 1]), make_items(impath, [1])
    assert base.generate_fewshot_dataset(train, num_shots=-1) is train
    assert base.generate_fewshot_dataset(train, val, num_shots=0) == (train, val)
    assert capsys.readouterr().out == ""


# ---- registry and builder ------------------------------------------------------------------


@DATASET_REGISTRY.register(force=True)
class RegistryProbeDataset(DatasetBase):
    def __init__(self, cfg):
        self.cfg = cfg


def probe_cfg(name="RegistryProbeDataset", verbose=True):
    cfg = get_cfg_default()
    cfg.DATASET.NAME = name
    cfg.VERBOSE = verbose
    return cfg


def test_build_dataset_prints_and_instantiates(capsys):
    cfg = probe_cfg()
    ds = build_dataset(cfg)
    assert isinstance(ds, RegistryProbeDataset) and ds.cfg is cfg
    assert capsys.readouterr().out == "Loading dataset: RegistryProbeDataset\n"


def test_build_dataset_is_silent_without_verbose(capsys):
    build_dataset(probe_cfg(verbose=False))
    assert capsys.readouterr().out == ""


def test_build_dataset_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match=r"\(do you mean \[RegistryProbeDataset\]\?\)"):
        build_dataset(probe_cfg(name="RegistryProbeDatset"))
