"""The generic ImageFolder reader: your own class folders from a dataset YAML, with no code.

In-process tests of the split sources (generated, train/ val/ test/ folders, a CoOp split file),
of the benchmark-identical few-shot and base/new handling, and of the errors; then one
end-to-end run through ``train.py`` and through the CoOp scripts with the tiny CLIP.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from conftest import FAST_OPTS, REPO, run_cli, run_concurrently

from disakit.datasets import common
from disakit.datasets.cache import StaleCacheError
from disakit.datasets.imagefolder import ImageFolderSettings, ImageFolderSource
from disakit.datasets.synthetic import make_image_folder

EXAMPLE_YAML = REPO / "configs" / "datasets" / "imagefolder_example.yaml"


def build(root: Path, folder: str = "my_data", *, seed: int = 1, shots: int = -1,
          subsample: str = "all", **keys):
    """The dataset as train.py builds it (engine defaults + extend_cfg; Python's random seeded
    with the run seed first, as set_random_seed does)."""
    from disakit.dassl_api import build_dataset, get_cfg_default
    from disakit.trainers.config import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.DATASET.NAME = "ImageFolder"
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.DIR = folder
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    for key, value in keys.items():
        cfg.DATASET[key] = value
    if seed >= 0:
        random.seed(seed)
    return build_dataset(cfg)


def items(data) -> list:
    return [(item.impath, item.label, item.classname) for item in data]


@pytest.fixture
def tree(tmp_path) -> Path:
    make_image_folder(tmp_path / "my_data", num_classes=4, per_class=10)
    return tmp_path


def test_generated_split_is_stratified_seeded_saved_and_reused(tree, capsys):
    folder = tree / "my_data"
    state = random.getstate()
    random.seed(123)
    before = random.random()
    random.seed(123)
    first = build(tree, seed=-1)  # an unseeded run: only the split draws from random
    assert random.random() == before, "the generated split consumed the run's random stream"
    random.setstate(state)
    out = capsys.readouterr().out
    split_file = folder / "split_disakit_my_data.json"
    assert f"saved to {split_file}" in out and "50% train / 20% val / 30% test" in out
    assert (len(first.train_x), len(first.val), len(first.test)) == (20, 8, 12)  # 5/2/3 a class
    assert first.classnames == ["Apple Pie", "Baby Back Ribs", "Baklava", "Beef Carpaccio"]
    saved = json.loads(split_file.read_text())
    assert saved["disakit"]["seed"] == 1 and saved["disakit"]["fractions"] == [0.5, 0.2]
    assert saved["train"][0][0].startswith("apple_pie/")  # relative to the dataset folder
    for label in range(4):  # stratified: every class has its share in every list
        assert [i.label for i in first.test].count(label) == 3

    again = build(tree, seed=7)  # another run seed reads the same split
    assert "Reading split from" in capsys.readouterr().out
    assert items(again.train_x) == items(first.train_x) and items(again.test) == items(first.test)

    split_file.unlink()  # the same seed makes the same split, whatever the run seed
    assert items(build(tree, seed=3).train_x) == items(first.train_x)
    split_file.unlink()
    other = build(tree, SPLIT_SEED=2, SPLIT_FRACTIONS=(0.6, 0.1))
    assert (len(other.train_x), len(other.val), len(other.test)) == (24, 4, 12)
    with pytest.raises(ValueError, match="was made with DATASET.SPLIT_FRACTIONS"):
        build(tree, SPLIT_SEED=1)


def test_few_shot_and_base_new_are_the_benchmarks(tree, capsys):
    """Same draws and relabelling as CoOpDataset: the engine's generate_fewshot_dataset (val:
    min(K, 4) shots) then subsample_classes, on the full lists -- on the run that makes the
    split and on later runs (cache)."""
    from disakit.dassl_api import DatasetBase

    settings = ImageFolderSettings(str(tree / "my_data"))
    train, val, test = ImageFolderSource(settings).load(save=False)
    random.seed(1)
    drawer = DatasetBase.__new__(DatasetBase)
    want_train = drawer.generate_fewshot_dataset(train, num_shots=2)
    want_val = drawer.generate_fewshot_dataset(val, num_shots=2)
    want = common.subsample_classes(want_train, want_val, test, subsample="base")

    for run in ("makes the split", "reads the split and the few-shot cache"):
        base = build(tree, shots=2, subsample="base")
        assert [items(base.train_x), items(base.val), items(base.test)] == \
            [items(w) for w in want], run
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    new = build(tree, shots=2, subsample="new")
    assert new.classnames == ["Baklava", "Beef Carpaccio"] and new.num_classes == 2
    assert {i.label for i in new.test} == {0, 1} and len(new.train_x) == 4


def test_train_val_test_folders_and_a_coop_split_file(tmp_path, capsys):
    make_image_folder(tmp_path / "folders", num_classes=3, subsets={"train": 4, "val": 2,
                                                                     "test": 3})
    ds = build(tmp_path, "folders")
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (12, 6, 9)
    assert all("/train/" in i.impath for i in ds.train_x) and ds.classnames[0] == "Apple Pie"
    assert not list((tmp_path / "folders").glob("split_disakit_*"))  # nothing generated

    make_image_folder(tmp_path / "no_val", num_classes=3, subsets={"train": 4, "test": 3})
    ds = build(tmp_path, "no_val")
    assert "the test set serves as val" in capsys.readouterr().out
    assert items(ds.val) == items(ds.test) and len(ds.test) == 9

    folder = tmp_path / "folders"  # a CoOp split file of the same images, other names/labels
    split = {"train": [[f"train/baklava/train_{i:04d}.jpg", 0, "sweet"] for i in range(4)]
             + [[f"train/apple_pie/train_{i:04d}.jpg", 1, "pie"] for i in range(4)],
             "val": [["val/baklava/val_0000.jpg", 0, "sweet"], ["val/apple_pie/val_0000.jpg", 1,
                                                                "pie"]],
             "test": [["test/baklava/test_0000.jpg", 0, "sweet"]]}
    (folder / "mine.json").write_text(json.dumps(split))
    ds = build(tmp_path, "folders", SPLIT_FILE="mine.json")
    assert ds.classnames == ["sweet", "pie"] and (len(ds.train_x), len(ds.val)) == (8, 2)


def test_clear_errors(tmp_path, tree):
    with pytest.raises(ValueError, match="DATASET.DIR is empty"):
        build(tree, "")
    with pytest.raises(FileNotFoundError, match="dataset folder not found.*DATASET.DIR"):
        build(tree, "nope")
    (tmp_path / "flat").mkdir()
    (tree / "my_data" / "apple_pie" / "img_0000.jpg").rename(tmp_path / "flat" / "a.jpg")
    with pytest.raises(FileNotFoundError, match="no class folders.*1 image"):
        build(tmp_path, "flat")
    with pytest.raises(FileNotFoundError, match="SPLIT_FILE"):
        build(tree, SPLIT_FILE="missing.json")
    with pytest.raises(ValueError, match="SPLIT_FRACTIONS must be"):
        build(tree, SPLIT_FRACTIONS=(0.8, 0.3))

    build(tree, shots=2)  # split + a 2-shot cache for seed 1
    (tree / "my_data" / "zucchini").mkdir()
    with pytest.raises(ValueError, match=r"class folders changed.*added: \['zucchini'\]"):
        build(tree)
    (tree / "my_data" / "zucchini").rmdir()
    (tree / "my_data" / "split_disakit_my_data.json").unlink()  # re-split with other shares:
    with pytest.raises(StaleCacheError, match="another split"):  # the old draw is refused
        build(tree, shots=2, SPLIT_FRACTIONS=(0.3, 0.3))


def test_yaml_keys_are_declared_once_and_the_example_merges():
    from disakit.dassl_api import get_cfg_default
    from disakit.trainers.config import DATASET_KEYS, extend_cfg, merge_checked

    cfg = get_cfg_default()
    extend_cfg(cfg)
    assert {k: cfg.DATASET[k] for k in DATASET_KEYS} == DATASET_KEYS
    merge_checked(cfg, str(EXAMPLE_YAML), "example")
    assert (cfg.DATASET.NAME, cfg.DATASET.DIR, cfg.DATASET.SPLIT_FRACTIONS) == \
        ("ImageFolder", "my_dataset", (0.5, 0.2))


def test_protocol_takes_a_user_named_yaml(tmp_path, monkeypatch):
    """The scripts look a dataset up as configs/datasets/<name>.yaml: any name works."""
    from disakit.runkit import protocol

    (tmp_path / "configs" / "datasets").mkdir(parents=True)
    (tmp_path / "configs" / "trainers").symlink_to(REPO / "configs" / "trainers")
    (tmp_path / "configs" / "datasets" / "my_flowers.yaml").write_text(EXAMPLE_YAML.read_text())
    monkeypatch.setattr(protocol, "ROOT", tmp_path)
    env = {"DATA": "/data", "OUTPUT": "/out"}
    ns = protocol.build_parser().parse_args(["--trainer", "CoOp", "base2new_train", "my_flowers",
                                             "1"])
    args, out_dir, _ = protocol.phase_jobs(ns, env)
    assert args[args.index("--dataset-config-file") + 1] == \
        str(tmp_path / "configs" / "datasets" / "my_flowers.yaml")
    assert out_dir == Path("/out/base2new/train_base/my_flowers/shots_16/CoOp/vit_b16_ctxv1/seed1")
    ns = protocol.build_parser().parse_args(["--trainer", "CoOp", "few_shot", "my_flowers", "4",
                                             "2"])
    assert protocol.phase_jobs(ns, env)[1] == \
        Path("/out/my_flowers/CoOp/vit_b16_ep100_4shots/seed2")


def test_end_to_end_through_train_py_and_the_scripts(tmp_path, tiny_clip_path):
    """No code: a generated class-folder tree, the shipped example YAML through the CoOp
    scripts (base-to-novel train and test, few-shot), and a user's own YAML (train/ val/ test/
    folders) through train.py."""
    data, out = tmp_path / "data", tmp_path / "out"
    make_image_folder(data / "my_dataset", num_classes=4, per_class=10)
    make_image_folder(data / "pets_by_folder", num_classes=4,
                      subsets={"train": 4, "val": 1, "test": 2})
    user_yaml = tmp_path / "my_pets.yaml"
    user_yaml.write_text('DATASET:\n  NAME: "ImageFolder"\n  DIR: "pets_by_folder"\n')
    env = {"DATA": str(data), "OUTPUT": str(out), "SHOTS": "2"}
    opts = ["MODEL.BACKBONE.NAME", str(tiny_clip_path), *FAST_OPTS]
    script = lambda name, *args: ["bash", f"scripts/coop/{name}.sh", *args, *opts]  # noqa: E731
    train_py = [sys.executable, "train.py", "--root", str(data), "--seed", "1", "--trainer",
                "CoOp", "--dataset-config-file", str(user_yaml), "--config-file",
                "configs/trainers/CoOp/vit_b16_ctxv1.yaml", "--output-dir",
                str(out / "direct"), *opts, "DATASET.NUM_SHOTS", "2",
                "DATASET.SUBSAMPLE_CLASSES", "base"]
    run_concurrently({"base2new_train": script("base2new_train", "imagefolder_example", "1"),
                      "train.py": train_py}, env)
    run_concurrently({"base2new_test": script("base2new_test", "imagefolder_example", "1"),
                      "few_shot": script("few_shot", "imagefolder_example", "1", "1")}, env)

    sub = "imagefolder_example/shots_2/CoOp/vit_b16_ctxv1/seed1"
    train_log = (out / "base2new" / "train_base" / sub / "log.txt").read_text()
    assert "seeded, stratified split" in train_log and "SUBSAMPLE BASE CLASSES!" in train_log
    assert "# classes  2" in train_log and "Finish training" in train_log
    test_log = (out / "base2new" / "test_new" / sub / "log.txt").read_text()
    assert "Reading split from" in test_log and "SUBSAMPLE NEW CLASSES!" in test_log
    assert "* total: 6" in test_log and "* accuracy:" in test_log  # 2 new classes x 3 test
    few = (out / "imagefolder_example" / "CoOp" / "vit_b16_ep50_1shots" / "seed1" / "log.txt")
    assert "Creating a 1-shot dataset" in few.read_text() and "* total: 12" in few.read_text()
    direct = (out / "direct" / "log.txt").read_text()
    assert "# classes  2" in direct and "* total: 4" in direct and "Finish training" in direct
    assert (data / "my_dataset" / "split_disakit_my_dataset.json").is_file()
    assert not list((data / "pets_by_folder").glob("split_disakit_*"))
    summary = run_cli(sys.executable, "parse_test_res.py", str(out / "base2new"), "--base2new",
                      "--shots", "2").stdout
    assert "imagefolder_example" in summary
