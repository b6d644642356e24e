"""SimpleTrainer.build_data_loader through the real DataManager on a tiny generated dataset."""
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

data = pytest.importorskip("disakit.dasslite.data")
from disakit.dasslite.config import get_cfg_default  # noqa: E402
from disakit.dasslite.data.datasets import DATASET_REGISTRY, DatasetBase, Datum  # noqa: E402
from disakit.dasslite.engine import TrainerX  # noqa: E402
from disakit.dasslite.optim import build_lr_scheduler, build_optimizer  # noqa: E402

SIZE = 8


def _make_images(root, n_per_class=3, n_classes=2):
    from PIL import Image

    items = []
    for label in range(n_classes):
        folder = os.path.join(root, f"c{label}")
        os.makedirs(folder, exist_ok=True)
        for i in range(n_per_class):
            path = os.path.join(folder, f"{i}.png")
            Image.new("RGB", (SIZE, SIZE), (60 * label + i, 0, 0)).save(path)
            items.append(Datum(impath=path, label=label, classname=f"c{label}"))
    return items


class EngineTinyImages(DatasetBase):
    """Two classes of solid-colour 8x8 images written under ``DATASET.ROOT``."""

    def __init__(self, cfg):
        items = _make_images(cfg.DATASET.ROOT)
        super().__init__(train_x=items, val=None, test=items)


DATASET_REGISTRY.register(EngineTinyImages, force=True)


class TinyTrainer(TrainerX):
    def build_model(self):
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, self.num_classes))
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def forward_backward(self, batch):
        img, label, _ = self.parse_batch_train(batch)
        loss = F.cross_entropy(self.model(img), label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item()}


def test_trainer_with_datamanager(tmp_path, capsys):
    cfg = get_cfg_default()
    cfg.merge_from_list([
        "OUTPUT_DIR", str(tmp_path / "out"), "USE_CUDA", False,
        "DATASET.NAME", "EngineTinyImages", "DATASET.ROOT", str(tmp_path / "data"),
        "INPUT.SIZE", (SIZE, SIZE), "INPUT.TRANSFORMS", ("normalize",),
        "DATALOADER.NUM_WORKERS", 0, "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
        "DATALOADER.TEST.BATCH_SIZE", 4, "OPTIM.NAME", "sgd", "OPTIM.MAX_EPOCH", 1,
    ])
    cfg.freeze()
    torch.manual_seed(0)
    trainer = TinyTrainer(cfg)
    assert trainer.num_classes == 2 and trainer.lab2cname == {0: "c0", 1: "c1"}
    assert trainer.val_loader is None and len(trainer.train_loader_x) == 1  # 6 // 4, drop_last
    trainer.train()
    out = capsys.readouterr().out
    assert "epoch [1/1] batch [1/1]" in out and "* total: 6\n" in out
    assert os.path.isfile(tmp_path / "out/model/model.pth.tar-1")
