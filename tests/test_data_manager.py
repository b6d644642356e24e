"""DataManager, build_data_loader and DatasetWrapper of dasslite.data."""
from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

import disakit.dasslite.data.data_manager as dm_module
from disakit.dasslite.config import get_cfg_default
from disakit.dasslite.data import DataManager, DatasetWrapper
from disakit.dasslite.data.data_manager import ImageReadError, build_data_loader, format_table
from disakit.dasslite.data.datasets import DATASET_REGISTRY, DatasetBase, Datum

SPEC_SUMMARY = """\
---------  ----------
Dataset    OxfordPets
# classes  19
# train_x  304
# val      76
# test     1,881
---------  ----------
"""


def write_image(path, size=(12, 9), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return str(path)


def make_items(impath, n, n_labels=19):
    labels = [i % n_labels for i in range(n)]
    return [Datum(impath=impath, label=lab, classname=f"c{lab}") for lab in labels]


@DATASET_REGISTRY.register(force=True)
class TinyManagerDataset(DatasetBase):
    """All items share one image under DATASET.ROOT; sizes come from class attributes."""

    n_train, n_val, n_test = 304, 76, 1881

    def __init__(self, cfg):
        impath = write_image(f"{cfg.DATASET.ROOT}/img.png")
        cls = type(self)
        super().__init__(
            train_x=make_items(impath, cls.n_train),
            val=make_items(impath, cls.n_val),
            test=make_items(impath, cls.n_test),
        )


@pytest.fixture
def cfg(tmp_path):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(tmp_path)
    cfg.DATASET.NAME = "TinyManagerDataset"
    cfg.INPUT.SIZE = (8, 8)
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.USE_CUDA = False
    cfg.VERBOSE = False
    return cfg


@pytest.fixture
def sizes(monkeypatch):
    def set_sizes(n_train, n_val=76, n_test=1881):
        monkeypatch.setattr(TinyManagerDataset, "n_train", n_train)
        monkeypatch.setattr(TinyManagerDataset, "n_val", n_val)
        monkeypatch.setattr(TinyManagerDataset, "n_test", n_test)

    return set_sizes


# ---- loaders -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_train,batch,expected", [(304, 4, 76), (304, 32, 9), (3, 32, 1)])
def test_train_iterations_follow_the_drop_last_rule(cfg, sizes, n_train, batch, expected):
    sizes(n_train)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = batch
    assert len(DataManager(cfg).train_loader_x) == expected


def test_train_epoch_drops_the_last_partial_batch(cfg, sizes):
    sizes(10, n_val=0, n_test=5)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    batches = list(DataManager(cfg).train_loader_x)
    assert [len(b["label"]) for b in batches] == [4, 4]


def test_eval_loaders_never_drop(cfg, sizes):
    sizes(8, n_val=7, n_test=1881)
    cfg.DATALOADER.TEST.BATCH_SIZE = 100
    dm = DataManager(cfg)
    assert len(dm.test_loader) == 19 and len(dm.val_loader) == 1
    assert [len(b["index"]) for b in dm.val_loader] == [7]


def test_val_loader_is_none_without_val(cfg, sizes):
    sizes(8, n_val=0, n_test=3)
    assert DataManager(cfg).val_loader is None


def test_manager_exposes_dataset_facts(cfg, sizes):
    sizes(40, n_val=0, n_test=3)
    cfg.DATASET.SOURCE_DOMAINS = ["a", "b"]
    dm = DataManager(cfg)
    assert dm.num_classes == 19 and dm.num_source_domains == 2
    assert dm.lab2cname == dm.dataset.lab2cname == {i: f"c{i}" for i in range(19)}
    assert dm.train_loader_u is None


def test_batches_collate_to_tensors(cfg, sizes):
    sizes(6, n_val=0, n_test=5)
    cfg.DATALOADER.TEST.BATCH_SIZE = 5
    batch = next(iter(DataManager(cfg).test_loader))
    assert batch["img"].shape == (5, 3, 8, 8)
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [0, 1, 2, 3, 4]
    assert batch["domain"].dtype == torch.int64 and batch["index"].tolist() == [0, 1, 2, 3, 4]
    assert batch["impath"] == [f"{cfg.DATASET.ROOT}/img.png"] * 5


def test_pin_memory_follows_cuda_and_use_cuda(cfg):
    items = make_items(write_image(f"{cfg.DATASET.ROOT}/a.png"), 4)
    for use_cuda in (False, True):
        cfg.USE_CUDA = use_cuda
        loader = build_data_loader(cfg, "SequentialSampler", items, 2, tfm=None, is_train=False)
        assert loader.pin_memory == (use_cuda and torch.cuda.is_available())


def test_loader_with_no_items_is_rejected(cfg):
    with pytest.raises(AssertionError):
        build_data_loader(cfg, "SequentialSampler", [], 2, tfm=None, is_train=False)


def test_custom_transforms_and_wrapper_are_used(cfg, sizes, capsys):
    sizes(4, n_val=0, n_test=2)
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 2

    class TaggedWrapper(DatasetWrapper):
        pass

    tfm = T.Compose([T.Resize((5, 5)), T.ToTensor()])
    dm = DataManager(cfg, custom_tfm_train=tfm, custom_tfm_test=tfm, dataset_wrapper=TaggedWrapper)
    assert capsys.readouterr().out.splitlines() == [
        "* Using custom transform for training",
        "* Using custom transform for testing",
    ]
    assert isinstance(dm.train_loader_x.dataset, TaggedWrapper)
    assert next(iter(dm.test_loader))["img"].shape == (2, 3, 5, 5)


# ---- summary table -------------------------------------------------------------------------


@pytest.fixture
def pets_like(monkeypatch, cfg, sizes):
    """A DataManager whose dataset reports OxfordPets' 16-shot base-class sizes."""
    sizes(304)
    dataset = TinyManagerDataset(cfg)
    monkeypatch.setattr(dm_module, "build_dataset", lambda _cfg: dataset)
    cfg.DATASET.NAME = "OxfordPets"
    cfg.VERBOSE = True
    return cfg


def summary_of(cfg, capsys):
    DataManager(cfg, custom_tfm_train=T.ToTensor(), custom_tfm_test=T.ToTensor())
    return capsys.readouterr().out.split("testing\n", 1)[1]


def test_summary_table_matches_spec_with_tabulate(pets_like, capsys):
    pytest.importorskip("tabulate")
    assert summary_of(pets_like, capsys) == SPEC_SUMMARY


def test_summary_table_matches_spec_without_tabulate(pets_like, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tabulate", None)  # makes `import tabulate` fail
    assert summary_of(pets_like, capsys) == SPEC_SUMMARY


TABLES = [
    [["Dataset", "X"], ["Source", ["photo", "art"]], ["Target", ("sketch",)], ["# test", "12"]],
    [["Dataset", ""], ["# classes", "19"], ["# test", "881"]],
    [["Dataset", "ImageNet"], ["# classes", "1,000"], ["# train_x", "16,000"]],
]


@pytest.mark.parametrize("rows", TABLES)
def test_fallback_table_renders_like_tabulate(rows, monkeypatch):
    tabulate = pytest.importorskip("tabulate").tabulate
    monkeypatch.setitem(sys.modules, "tabulate", None)
    assert format_table(rows) == tabulate(rows)


# ---- DatasetWrapper ------------------------------------------------------------------------


@pytest.fixture
def items(tmp_path):
    return make_items(write_image(tmp_path / "w.png"), 3)


def test_wrapper_without_transform_returns_the_pil_image(cfg, items):
    out = DatasetWrapper(cfg, items)[1]
    assert isinstance(out["img"], Image.Image) and out["img"].mode == "RGB"
    assert (out["label"], out["domain"], out["index"]) == (1, 0, 1)
    assert out["impath"] == items[1].impath


def test_wrapper_list_of_transforms_gives_img_img2(cfg, items):
    tfms = [T.Compose([T.Resize(size), T.ToTensor()]) for size in ((4, 4), (6, 6))]
    out = DatasetWrapper(cfg, items, transform=tfms)[0]
    assert out["img"].shape == (3, 4, 4) and out["img2"].shape == (3, 6, 6)
    assert "img3" not in out


def test_wrapper_k_transforms_applies_only_in_training(cfg, items):
    cfg.DATALOADER.K_TRANSFORMS = 3
    tfm = T.Compose([T.Resize((4, 4)), T.ToTensor()])
    views = DatasetWrapper(cfg, items, transform=tfm, is_train=True)[0]["img"]
    assert isinstance(views, list) and len(views) == 3
    assert torch.is_tensor(DatasetWrapper(cfg, items, transform=tfm, is_train=False)[0]["img"])


def test_wrapper_k_transforms_without_transform_is_an_error(cfg, items):
    cfg.DATALOADER.K_TRANSFORMS = 2
    with pytest.raises(ValueError, match="2 times because transform is None"):
        DatasetWrapper(cfg, items, transform=None, is_train=True)


@pytest.mark.parametrize("normalize", [True, False])
def test_wrapper_img0_is_resize_totensor_normalize(cfg, items, normalize):
    cfg.DATALOADER.RETURN_IMG0 = True
    cfg.INPUT.TRANSFORMS = ["random_flip"] + (["normalize"] if normalize else [])
    img0 = DatasetWrapper(cfg, items, transform=T.ToTensor())[0]["img0"]
    by_hand = T.functional.to_tensor(
        T.functional.resize(Image.open(items[0].impath).convert("RGB"), [8, 8])
    )
    if normalize:
        by_hand = T.functional.normalize(by_hand, cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD)
    assert torch.equal(img0, by_hand)


def test_missing_image_error_names_file_and_fix(cfg, tmp_path):
    path = str(tmp_path / "gone.jpg")
    wrapper = DatasetWrapper(cfg, [Datum.from_fields(path, 0, 0, "x")], is_train=True)
    with pytest.raises(ImageReadError, match=re.escape(path)) as err:
        wrapper[0]
    assert "item 0 of the train set" in str(err.value) and "Re-extract or remove" in str(err.value)
    assert isinstance(err.value, OSError)


def test_corrupt_image_error_through_a_worker_names_file(cfg, tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8 definitely not a jpeg")
    cfg.DATALOADER.NUM_WORKERS = 1
    loader = build_data_loader(
        cfg, "SequentialSampler", [Datum(impath=str(path))], 1, tfm=T.ToTensor(), is_train=False
    )
    with pytest.raises(OSError, match=re.escape(str(path))) as err:
        next(iter(loader))
    assert "val/test set" in str(err.value)
