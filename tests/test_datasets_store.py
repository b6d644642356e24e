"""The dataset layer's cache API (datasets/store.py): atomic writes, the SEED < 0 rule, keyed
validity and unwritable folders, for the few-shot, ImageNet and class-prototype caches alike."""
from __future__ import annotations

import json
import os
import pickle
import random

import pytest
import torch

from disakit.datasets import load_dataset
from disakit.datasets.base import dataset_cache
from disakit.datasets.cache import FewShotCache
from disakit.datasets.store import (
    FEWSHOT_DIR,
    DatasetCache,
    KeyedFile,
    atomic_write,
    json_writer,
)
from disakit.datasets.synthetic import make_dataset
from disakit.runkit.safe_load import UnsafeCheckpointError

FMT = "test/keyed/v1"


def temp_files(folder) -> list[str]:
    return [name for name in os.listdir(folder) if ".tmp-" in name]


def crashing_writer(path: str) -> None:
    """Writes half a file, then dies (a full disk, a killed serialiser)."""
    with open(path, "w") as f:
        f.write('{"half": ')
    raise KeyboardInterrupt("simulated crash while writing")


# -- atomic writes -----------------------------------------------------------------------------


def test_a_crash_while_writing_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = str(tmp_path / "cache.json")
    atomic_write(path, json_writer({"version": 1}))
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crashing_writer)
    assert json.loads((tmp_path / "cache.json").read_text()) == {"version": 1}
    assert temp_files(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(tmp_path / "new.json"), crashing_writer)
    assert sorted(os.listdir(tmp_path)) == ["cache.json"]


def test_a_failed_save_is_one_line_and_leaves_nothing(tmp_path, capsys):
    store = DatasetCache(str(tmp_path))
    path = store.fewshot_file("shot_1-seed_1.json", seed=1)

    def disk_full(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("{")
        raise OSError(28, "No space left on device")

    assert store.save(path, disk_full, "preprocessed few-shot data") is False
    out = capsys.readouterr().out.splitlines()
    assert out == [f"Note: preprocessed few-shot data not cached: cannot write {path} (No space "
                   "left on device); the run continues without the cache"]
    assert os.listdir(tmp_path / FEWSHOT_DIR) == []


# -- where, and when ---------------------------------------------------------------------------


def test_paths_seed_rule_and_absent_stores(tmp_path):
    store = DatasetCache(str(tmp_path))
    assert store.fewshot_dir == str(tmp_path / FEWSHOT_DIR)
    assert store.fewshot_file("a.pt", seed=0) == str(tmp_path / FEWSHOT_DIR / "a.pt")
    assert store.fewshot_file("a.pt", seed=-1) is None
    assert "SEED < 0" in store.disabled_reason(-1) and store.disabled_reason(3) == ""
    assert store.dataset_file("preprocessed.json") == str(tmp_path / "preprocessed.json")
    assert not (tmp_path / FEWSHOT_DIR).exists()  # nothing is created by asking
    absent = DatasetCache.absent("a test-only dataset")
    assert absent.fewshot_file("a.pt", seed=1) is None and absent.dataset_file("x") is None
    assert absent.disabled_reason(1) == "a test-only dataset"
    with pytest.raises(ValueError):
        DatasetCache(None)
    assert "not one of this toolkit's dataset readers" in dataset_cache(object()).absent_reason


def test_readers_declare_their_store(tmp_path):
    make_dataset("eurosat", tmp_path, num_classes=2, per_class=(2, 1, 1), image_size=8)
    make_dataset("imagenet_sketch", tmp_path, num_classes=2, per_class=(0, 0, 2), image_size=8)
    eurosat = load_dataset("eurosat", tmp_path)
    assert dataset_cache(eurosat).dataset_dir == eurosat.dataset_dir
    assert eurosat.split_fewshot_dir == dataset_cache(eurosat).fewshot_dir
    sketch = dataset_cache(load_dataset("imagenet_sketch", tmp_path))
    assert sketch.dataset_dir is None and "test-only" in sketch.absent_reason
    assert not (tmp_path / "imagenet-sketch" / FEWSHOT_DIR).exists()


def test_negative_seed_writes_no_keyed_file(tmp_path, capsys):
    entry = DatasetCache(str(tmp_path)).keyed_file("p.pt", -1, FMT, {"a": 1}, "class prototypes")
    assert entry.path is None and entry.load() is None
    assert entry.save({"prototypes": torch.ones(2)}) is False
    assert "Note: class prototypes not cached (SEED < 0" in capsys.readouterr().out
    assert not (tmp_path / FEWSHOT_DIR).exists()


# -- keyed validity ----------------------------------------------------------------------------


def test_keyed_file_round_trip_and_a_stale_key_is_recomputed(tmp_path, capsys):
    store = DatasetCache(str(tmp_path))
    key = {"backbone": "ViT-B/16", "classnames": ["cat", "dog"], "seed": 1}
    entry = store.keyed_file("p.pt", 1, FMT, key, "class prototypes")
    assert entry.load() is None  # missing
    assert entry.save({"prototypes": torch.arange(4.0)})
    assert f"Saving class prototypes to {entry.path}" in capsys.readouterr().out
    loaded = entry.load()
    assert loaded is not None and torch.equal(loaded["prototypes"], torch.arange(4.0))
    assert loaded["format"] == FMT and loaded["key"] == key
    assert temp_files(store.fewshot_dir) == []
    for other in ({**key, "seed": 2}, {**key, "classnames": ["dog", "cat"]}):
        stale = store.keyed_file("p.pt", 1, FMT, other, "class prototypes")
        assert stale.load() is None
        assert "Class prototypes at" in capsys.readouterr().out
    assert store.keyed_file("p.pt", 1, "test/keyed/v2", key, "class prototypes").load() is None
    assert KeyedFile(store, entry.path, FMT, key, "class prototypes").load() is not None


class Smuggled:
    """A class no cache holds."""


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo should-not-run",))


def test_keyed_files_are_read_safely(tmp_path, capfd):
    store = DatasetCache(str(tmp_path))
    entry = store.keyed_file("p.pt", 1, FMT, {}, "class prototypes")
    os.makedirs(store.fewshot_dir)
    torch.save({"format": FMT, "key": {}, "prototypes": Smuggled()}, entry.path)
    with pytest.raises(UnsafeCheckpointError, match="Refusing to load class prototypes"):
        entry.load()
    torch.save({"format": FMT, "key": {}, "prototypes": RunsCode()}, entry.path)
    with pytest.raises((UnsafeCheckpointError, pickle.UnpicklingError)):
        entry.load()
    assert "should-not-run" not in capfd.readouterr().out


# -- unwritable folders ------------------------------------------------------------------------


def blocked_fewshot_folder(root) -> None:
    """A regular file where ``split_fewshot/`` would be: nothing can be written in it, whoever
    runs the tests (a chmod does not stop root)."""
    (root / "eurosat").mkdir(exist_ok=True)
    (root / "eurosat" / FEWSHOT_DIR).write_text("not a folder")


def test_an_unwritable_fewshot_folder_skips_the_cache_with_one_line(tmp_path, capsys):
    make_dataset("eurosat", tmp_path, num_classes=3, per_class=(3, 2, 1), image_size=8)
    blocked_fewshot_folder(tmp_path)
    random.seed(1)
    ds = load_dataset("eurosat", tmp_path, num_shots=2, seed=1)
    assert len(ds.train_x) == 6  # the run goes on
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Note:")]
    assert len(notes) == 1 and "preprocessed few-shot data not cached" in notes[0]
    assert "shot_2-seed_1.json" in notes[0]
    assert (tmp_path / "eurosat" / FEWSHOT_DIR).read_text() == "not a folder"
    random.seed(1)
    again = load_dataset("eurosat", tmp_path, num_shots=2, seed=1)
    assert [i.impath for i in again.train_x] == [i.impath for i in ds.train_x]


def test_imagenet_list_on_an_unwritable_folder_is_built_and_not_cached(tmp_path, capsys,
                                                                      monkeypatch):
    make_dataset("imagenet", tmp_path, num_classes=2, per_class=(2, 0, 1), image_size=8)

    def read_only(src, dst):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "replace", read_only)
    ds = load_dataset("imagenet", tmp_path)
    assert len(ds.train_x) == 4
    out = capsys.readouterr().out
    assert "Note: preprocessed data not cached" in out and "(Read-only file system)" in out
    assert "Saving preprocessed data" not in out
    assert not (tmp_path / "imagenet" / "preprocessed.json").exists()
    assert not [n for n in os.listdir(tmp_path / "imagenet") if ".tmp-" in n]


def test_few_shot_cache_paths_come_from_the_store(tmp_path):
    store = DatasetCache(str(tmp_path))
    cache = FewShotCache(store, 4, 2)
    assert cache.json_path == str(tmp_path / FEWSHOT_DIR / "shot_4-seed_2.json")
    assert cache.pkl_path == str(tmp_path / FEWSHOT_DIR / "shot_4-seed_2.pkl")
    unseeded = FewShotCache(store, 4, -1)
    assert not unseeded.enabled and unseeded.json_path is None and unseeded.load() is None
    off = FewShotCache(DatasetCache.absent("test-only"), 4, 2)
    assert not off.enabled and off.load() is None
