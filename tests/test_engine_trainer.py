"""TrainerX lifecycle on a tiny fake trainer: log lines, checkpoints and exact resume."""
import importlib.util
import os
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from disakit.dasslite.config import get_cfg_default
from disakit.dasslite.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from disakit.dasslite.metrics import compute_accuracy
from disakit.dasslite.optim import build_lr_scheduler, build_optimizer

N_CLASSES, DIM = 3, 5
BATCH_LINE = re.compile(
    r"^epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\] time \d+\.\d{3} \(\d+\.\d{3}\) "
    r"data \d+\.\d{3} \(\d+\.\d{3}\) loss \d+\.\d{4} \(\d+\.\d{4}\) "
    r"acc \d+\.\d{4} \(\d+\.\d{4}\) lr (\d\.\d{4}e[-+]\d{2}) eta \d+:\d{2}:\d{2}$"
)


def _batches(n_batches, seed):
    g = torch.Generator().manual_seed(seed)
    return [
        {"img": torch.randn(4, DIM, generator=g),
         "label": torch.randint(0, N_CLASSES, (4,), generator=g),
         "domain": torch.zeros(4, dtype=torch.long)}
        for _ in range(n_batches)
    ]


class FakeLinear(TrainerX):
    """A 1-layer classifier on fixed random tensors (no DataManager, no shuffling)."""

    stop_at_epoch = None  # raise KeyboardInterrupt before this 0-based epoch starts

    def build_data_loader(self):
        self.train_loader_x = _batches(3, seed=0)
        self.train_loader_u = None
        self.val_loader = None
        self.test_loader = _batches(2, seed=1)
        self.num_classes = N_CLASSES
        self.num_source_domains = 0
        self.lab2cname = {i: f"class{i}" for i in range(N_CLASSES)}

    def build_model(self):
        torch.manual_seed(0)
        self.model = nn.Linear(DIM, N_CLASSES)
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)

    def before_epoch(self):
        if self.epoch == self.stop_at_epoch:
            raise KeyboardInterrupt

    def forward_backward(self, batch):
        img, label, _ = self.parse_batch_train(batch)
        output = self.model(img)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}


def _cfg(output_dir, max_epoch=4, **extra):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.USE_CUDA = False
    cfg.TRAINER.NAME = "FakeLinear"
    cfg.OPTIM.merge_from_list(["NAME", "sgd", "LR", 0.1, "MAX_EPOCH", max_epoch,
                               "LR_SCHEDULER", "cosine", "WARMUP_EPOCH", 1,
                               "WARMUP_TYPE", "constant"])
    cfg.TRAIN.PRINT_FREQ = 2
    for key, value in extra.items():
        node, leaf = key.split("__")
        setattr(cfg[node], leaf, value)
    cfg.freeze()
    return cfg


def _train(cfg, stop_at_epoch=None):
    trainer = FakeLinear(cfg)
    trainer.stop_at_epoch = stop_at_epoch
    trainer.train()
    return trainer


def _batch_lrs(out):
    return [(int(m.group(1)), m.group(5)) for m in map(BATCH_LINE.match, out.splitlines()) if m]


def test_build_trainer_uses_registry(tmp_path, capsys):
    TRAINER_REGISTRY.register(FakeLinear, force=True)
    trainer = build_trainer(_cfg(tmp_path))
    assert isinstance(trainer, FakeLinear) and trainer.device.type == "cpu"
    assert capsys.readouterr().out.splitlines()[:2] == [
        "Loading trainer: FakeLinear", "Loading evaluator: Classification"]


def test_full_lifecycle_lines_and_single_last_checkpoint(tmp_path, capsys):
    _train(_cfg(tmp_path))
    lines = capsys.readouterr().out.splitlines()
    batch = [m for m in map(BATCH_LINE.match, lines) if m]
    # 3 batches < PRINT_FREQ? no (2): batch 2 of every epoch is printed
    assert [(m.group(1), m.group(3)) for m in batch] == [(str(e), "2") for e in range(1, 5)]
    assert batch[0].group(5) == "1.0000e-05" and batch[1].group(5) == "1.0000e-01"
    tb = f"{tmp_path}/tensorboard"
    assert lines[1] == "No checkpoint found, train from scratch"
    assert lines[2] == f"Initialize tensorboard (log_dir={tb})"
    assert os.path.isdir(tb)
    if importlib.util.find_spec("tensorboard") is None:
        assert os.listdir(tb) == []  # no tensorboard: the folder exists but stays empty
    i = lines.index(f"Checkpoint saved to {tmp_path}/model/model.pth.tar-4")
    assert lines[i + 1: i + 4] == ["Finish training", "Deploy the last-epoch model",
                                   "Evaluate on the *test* set"]
    assert lines[i + 4] == "=> result" and lines[i + 5] == "* total: 8"
    assert re.fullmatch(r"Elapsed: 0:00:\d\d", lines[-1])
    assert sorted(os.listdir(tmp_path / "model")) == ["checkpoint", "model.pth.tar-4"]
    saved = torch.load(tmp_path / "model/model.pth.tar-4", weights_only=True)
    assert saved["epoch"] == 4 and saved["val_result"] is None


def test_print_every_batch_when_fewer_batches_than_print_freq(tmp_path, capsys):
    _train(_cfg(tmp_path, max_epoch=1, TRAIN__PRINT_FREQ=10))
    assert [e for e, _ in _batch_lrs(capsys.readouterr().out)] == [1, 1, 1]


def test_resume_after_interruption_is_bit_identical(tmp_path, capsys):
    _train(_cfg(tmp_path / "full", TRAIN__CHECKPOINT_FREQ=2))
    full_out = capsys.readouterr().out
    cfg = _cfg(tmp_path / "cut", TRAIN__CHECKPOINT_FREQ=2)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, stop_at_epoch=2)  # epochs 0-1 done, model.pth.tar-2 saved
    capsys.readouterr()
    _train(cfg)
    resumed_out = capsys.readouterr().out
    assert f"Found checkpoint at {tmp_path}/cut (will resume training)" in resumed_out
    assert "Previous epoch: 2" in resumed_out
    assert [e for e, _ in _batch_lrs(resumed_out)] == [3, 4]
    assert _batch_lrs(resumed_out) == _batch_lrs(full_out)[2:]
    final = "model/model.pth.tar-4"
    assert (tmp_path / "cut" / final).read_bytes() == (tmp_path / "full" / final).read_bytes()
    assert resumed_out.splitlines()[-8:-1] == full_out.splitlines()[-8:-1]  # same test result


def test_restarting_a_finished_run_only_retests(tmp_path, capsys):
    cfg = _cfg(tmp_path, max_epoch=2)
    _train(cfg)
    before = sorted(os.listdir(tmp_path / "model"))
    capsys.readouterr()
    _train(cfg)
    out = capsys.readouterr().out
    assert "Previous epoch: 2" in out and not _batch_lrs(out)
    assert "Checkpoint saved" not in out and "Finish training" in out
    assert sorted(os.listdir(tmp_path / "model")) == before


def test_best_val_without_val_warns_and_loads_best(tmp_path, capsys):
    _train(_cfg(tmp_path, max_epoch=2, TEST__FINAL_MODEL="best_val"))
    out = capsys.readouterr().out
    assert "Warning: TEST.FINAL_MODEL is best_val but the dataset has no val split" in out
    assert "Deploy the model with the best val performance" in out
    assert re.search(rf"Load {tmp_path}/model/model-best.pth.tar to model "
                     r"\(epoch=\d, val_result=\d+\.\d\)", out)


def test_load_model_base_lines_and_errors(tmp_path, capsys):
    trainer = _train(_cfg(tmp_path, max_epoch=1))
    capsys.readouterr()
    trainer.load_model(str(tmp_path), epoch=1)
    trainer.load_model("")
    assert capsys.readouterr().out.splitlines() == [
        f"Load {tmp_path}/model/model.pth.tar-1 to model (epoch=1, val_result=None)",
        "Note that load_model() is skipped as no pretrained model is given "
        "(ignore this if it's done on purpose)",
    ]
    with pytest.raises(FileNotFoundError, match="No model at .*model-best.pth.tar"):
        trainer.load_model(str(tmp_path))


def test_extra_checkpoint_state_hook_round_trips(tmp_path, capsys):
    class WithAccumulator(FakeLinear):
        def build_model(self):
            super().build_model()
            self.accumulator = torch.zeros(2)

        def after_epoch(self):
            self.accumulator += 1
            super().after_epoch()

        def extra_checkpoint_state(self, name):
            return {"accumulator": self.accumulator.clone()}

        def load_extra_checkpoint_state(self, name, checkpoint):
            self.accumulator = checkpoint["accumulator"]

    cfg = _cfg(tmp_path, max_epoch=2)
    WithAccumulator(cfg).train()
    resumed = WithAccumulator(cfg)
    resumed.train()
    assert torch.equal(resumed.accumulator, torch.full((2,), 2.0))


def test_helpers_errors(tmp_path):
    trainer = FakeLinear(_cfg(tmp_path))
    with pytest.raises(FloatingPointError, match="Loss is infinite or NaN!"):
        trainer.detect_anomaly(torch.tensor(float("nan")))
    with pytest.raises(KeyError):
        trainer.set_model_mode("training")
    with pytest.raises(AssertionError, match="Found duplicate model names"):
        trainer.register_model("model", trainer.model)
    assert trainer.get_model_names("model") == ["model"]
    bare = TrainerX.__new__(TrainerX)
    with pytest.raises(AttributeError, match="Cannot assign model before super"):
        bare.register_model("m", nn.Linear(1, 1))
