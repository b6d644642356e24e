"""Few-shot caches, ImageNet's preprocessed cache and reading real-Dassl pickles."""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import sys
import types

import pytest

from disakit.dassl_api import Datum
from disakit.datasets import load_dataset
from disakit.datasets.cache import (
    CACHE_FORMAT,
    DatumUnpickler,
    StaleCacheError,
    load_dassl_pickle,
    read_datum_lists,
    write_datum_lists,
)
from disakit.datasets.common import make_datum
from disakit.datasets.synthetic import make_dataset

DASSL_DATUM_MODULE = "dassl.data.datasets.base_dataset"


def fields(items):
    return [(i.impath, i.label, i.domain, i.classname) for i in items]


@pytest.fixture
def pets(tmp_path):
    make_dataset("oxford_pets", tmp_path)
    return tmp_path


@pytest.fixture
def fake_dassl(monkeypatch):
    """A stand-in for Dassl's Datum, importable under its real module path while pickling."""
    module = types.ModuleType(DASSL_DATUM_MODULE)

    class FakeDatum:
        def __init__(self, impath="", label=0, domain=0, classname=""):
            self._impath, self._label = impath, label
            self._domain, self._classname = domain, classname

    FakeDatum.__module__, FakeDatum.__qualname__ = DASSL_DATUM_MODULE, "Datum"
    module.Datum = FakeDatum
    for name in ("dassl", "dassl.data", "dassl.data.datasets"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, DASSL_DATUM_MODULE, module)
    return FakeDatum


def write_dassl_pickle(path, fake_cls, lists, monkeypatch):
    """Pickle like Dassl does, then make the fake module unimportable again."""
    data = {key: [fake_cls(i.impath, i.label, i.domain, i.classname) for i in items]
            for key, items in lists.items()}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    for name in (DASSL_DATUM_MODULE, "dassl.data.datasets", "dassl.data", "dassl"):
        monkeypatch.delitem(sys.modules, name)


def test_few_shot_cache_round_trip(pets, capsys):
    random.seed(1)
    first = load_dataset("oxford_pets", pets, num_shots=2, seed=1)
    cache = pets / "oxford_pets" / "split_fewshot" / "shot_2-seed_1.json"
    assert f"Saving preprocessed few-shot data to {cache}" in capsys.readouterr().out
    assert json.loads(cache.read_text())["format"] == CACHE_FORMAT
    random.seed(12345)  # a fresh draw would differ; the cache must win
    second = load_dataset("oxford_pets", pets, num_shots=2, seed=1)
    assert f"Loading preprocessed few-shot data from {cache}" in capsys.readouterr().out
    assert fields(second.train_x) == fields(first.train_x)
    assert fields(second.val) == fields(first.val)
    assert all(type(i) is Datum for i in second.train_x)


def test_cache_is_shared_by_base_and_new_runs(pets):
    random.seed(1)
    load_dataset("oxford_pets", pets, num_shots=2, seed=1, subsample="base")
    random.seed(777)
    new = load_dataset("oxford_pets", pets, num_shots=2, seed=1, subsample="new")
    random.seed(1)
    reference = load_dataset("oxford_pets", pets, num_shots=2, seed=5, subsample="new")
    assert fields(new.train_x) == fields(reference.train_x)  # same draw as seed-state 1


def test_negative_seed_neither_reads_nor_writes(pets):
    fewshot_dir = pets / "oxford_pets" / "split_fewshot"
    random.seed(1)
    load_dataset("oxford_pets", pets, num_shots=2, seed=-1)
    assert fewshot_dir.is_dir() and list(fewshot_dir.iterdir()) == []
    (fewshot_dir / "shot_2-seed_-1.json").write_text("not json")  # would crash if read
    load_dataset("oxford_pets", pets, num_shots=2, seed=-1)


def test_cache_survives_moving_the_data_folder(pets, tmp_path_factory):
    random.seed(1)
    first = load_dataset("oxford_pets", pets, num_shots=2, seed=1)
    moved = tmp_path_factory.mktemp("moved") / "data"
    shutil.move(str(pets), str(moved))
    random.seed(999)
    second = load_dataset("oxford_pets", moved, num_shots=2, seed=1)
    old_rel = [i.impath.replace(str(pets), "") for i in first.train_x]
    assert [i.impath.replace(str(moved), "") for i in second.train_x] == old_rel


def test_stale_cache_is_reported(pets):
    load_dataset("oxford_pets", pets, num_shots=2, seed=1)
    cache = pets / "oxford_pets" / "split_fewshot" / "shot_2-seed_1.json"
    content = json.loads(cache.read_text())
    content["train"][0][4][0] = "Abyssinian_9999.jpg"  # e.g. an image deleted since
    cache.write_text(json.dumps(content))
    with pytest.raises(StaleCacheError, match=r"Abyssinian_9999\.jpg\n.*delete .*seed_1\.json"):
        load_dataset("oxford_pets", pets, num_shots=2, seed=1)


def test_dassl_pickle_cache_is_read(pets, fake_dassl, monkeypatch):
    full = load_dataset("oxford_pets", pets)
    chosen = {"train": full.train_x[-3:], "val": full.val[:2]}  # not what sampling would pick
    path = pets / "oxford_pets" / "split_fewshot" / "shot_2-seed_1.pkl"
    write_dassl_pickle(str(path), fake_dassl, chosen, monkeypatch)
    ds = load_dataset("oxford_pets", pets, num_shots=2, seed=1)
    assert fields(ds.train_x) == fields(chosen["train"])
    assert fields(ds.val) == fields(chosen["val"])
    assert all(type(i) is Datum for i in ds.train_x)
    assert not (path.parent / "shot_2-seed_1.json").exists()


class Evil:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


@pytest.mark.parametrize("payload", [{"train": [Evil()]}, {"train": [random.Random(0)]}])
def test_restricted_unpickler_rejects_other_classes(tmp_path, payload):
    path = tmp_path / "shot_1-seed_1.pkl"
    path.write_bytes(pickle.dumps(payload))
    with open(path, "rb") as f, pytest.raises(pickle.UnpicklingError, match="refusing"):
        DatumUnpickler(f).load()
    with pytest.raises(ValueError, match="Delete the file"):
        load_dassl_pickle(str(path))


def test_restricted_unpickler_accepts_old_protocols(tmp_path, fake_dassl, monkeypatch):
    item = fake_dassl(str(tmp_path / "a.jpg"), 3, 0, "cat")
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"train": [item]}, protocol=0))
    for name in (DASSL_DATUM_MODULE, "dassl.data.datasets", "dassl.data", "dassl"):
        monkeypatch.delitem(sys.modules, name)
    loaded = load_dassl_pickle(str(path))["train"][0]
    assert type(loaded) is Datum and (loaded.impath, loaded.label) == (item._impath, 3)


def test_datum_lists_round_trip_keeps_order(tmp_path):
    base = str(tmp_path / "ds")
    items = [make_datum(f"{base}/a/{n}.jpg", lab, dom, f"c{lab}")
             for n, lab, dom in [(1, 0, 0), (2, 0, 0), (3, 1, 0), (4, 0, 0), (5, 0, 1)]]
    items.append(make_datum("/elsewhere/x.jpg", 2, 0, "c2"))
    path = str(tmp_path / "cache.json")
    write_datum_lists(path, {"train": items, "val": []}, base)
    loaded = read_datum_lists(path, base)
    assert fields(loaded["train"]) == fields(items) and loaded["val"] == []
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


# -- ImageNet -------------------------------------------------------------------------------


@pytest.fixture
def imagenet(tmp_path):
    make_dataset("imagenet", tmp_path, num_classes=4, per_class=(5, 0, 2))
    return tmp_path


def test_imagenet_later_builds_do_not_scan(imagenet, monkeypatch, capsys):
    first = load_dataset("imagenet", imagenet)
    json_path = imagenet / "imagenet" / "preprocessed.json"
    assert json_path.exists() and "Saving preprocessed data" in capsys.readouterr().out

    def no_listing(*args, **kwargs):
        raise AssertionError("the image folders were listed again")

    monkeypatch.setattr(os, "scandir", no_listing)
    monkeypatch.setattr(os, "listdir", no_listing)
    second = load_dataset("imagenet", imagenet)
    assert "Loading preprocessed data from" in capsys.readouterr().out
    assert fields(second.train_x) == fields(first.train_x)
    assert fields(second.test) == fields(first.test)


def test_imagenet_file_names_are_sorted(imagenet):
    ds = load_dataset("imagenet", imagenet)
    for label in range(4):
        paths = [i.impath for i in ds.train_x if i.label == label]
        assert paths == sorted(paths) and len(paths) == 5


def test_imagenet_few_shot_cache_holds_train_only(imagenet):
    ds = load_dataset("imagenet", imagenet, num_shots=2, seed=1)
    cache = json.loads((imagenet / "imagenet" / "split_fewshot" / "shot_2-seed_1.json").read_text())
    assert set(cache) == {"format", "train"}
    assert len(ds.train_x) == 8 and ds.val is ds.test and len(ds.test) == 8


def test_imagenet_reads_upstream_preprocessed_pickle(imagenet, fake_dassl, monkeypatch):
    full = load_dataset("imagenet", imagenet)
    os.remove(imagenet / "imagenet" / "preprocessed.json")
    upstream = {"train": full.train_x[::-1], "test": full.test[:3]}  # upstream order kept
    write_dassl_pickle(str(imagenet / "imagenet" / "preprocessed.pkl"), fake_dassl, upstream,
                       monkeypatch)
    ds = load_dataset("imagenet", imagenet)
    assert fields(ds.train_x) == fields(upstream["train"])
    assert fields(ds.test) == fields(upstream["test"])


def test_upstream_pickle_with_old_absolute_paths_is_stale(imagenet, fake_dassl, monkeypatch):
    full = load_dataset("imagenet", imagenet)
    moved = [make_datum(i.impath.replace(str(imagenet), "/old/place"), i.label, 0, i.classname)
             for i in full.train_x]
    write_dassl_pickle(str(imagenet / "imagenet" / "preprocessed.pkl"), fake_dassl,
                       {"train": moved, "test": moved}, monkeypatch)
    with pytest.raises(StaleCacheError, match="/old/place"):
        load_dataset("imagenet", imagenet)
