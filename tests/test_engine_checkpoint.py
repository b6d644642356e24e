"""Checkpoint save/load/resume, atomic writes and weight-loading helpers (docs/engine.md)."""
import os
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from disakit.dasslite.config import get_cfg_default
from disakit.dasslite.optim import build_lr_scheduler, build_optimizer
from disakit.dasslite.utils import (
    count_num_param,
    init_network_weights,
    load_checkpoint,
    load_pretrained_weights,
    open_all_layers,
    open_specified_layers,
    resume_from_checkpoint,
    save_checkpoint,
)
from disakit.runkit.safe_load import UnsafeCheckpointError


def _training_objects(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR_SCHEDULER, cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE = "sgd", "cosine", 1, "constant"
    optimizer = build_optimizer(model, cfg)
    return model, optimizer, build_lr_scheduler(optimizer, cfg)


def _one_epoch(model, optimizer, scheduler):
    loss = model(torch.ones(4, 3)).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def _state(model, optimizer, scheduler, epoch):
    return {"state_dict": model.state_dict(), "epoch": epoch,
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "val_result": None}


def test_save_layout_pointer_and_no_temp_leftovers(tmp_path, capsys):
    model, optimizer, scheduler = _training_objects()
    save_checkpoint(_state(model, optimizer, scheduler, 3), str(tmp_path / "m"))
    assert sorted(os.listdir(tmp_path / "m")) == ["checkpoint", "model.pth.tar-3"]
    assert (tmp_path / "m" / "checkpoint").read_text() == "model.pth.tar-3\n"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "m" / "model.pth.tar-3").st_mode & 0o777 == 0o666 & ~umask
    assert capsys.readouterr().out == f"Checkpoint saved to {tmp_path}/m/model.pth.tar-3\n"
    save_checkpoint(_state(model, optimizer, scheduler, 4), str(tmp_path / "m"),
                    is_best=True, model_name="custom.pth")
    assert (tmp_path / "m" / "checkpoint").read_text() == "custom.pth\n"
    assert sorted(os.listdir(tmp_path / "m")) == [
        "checkpoint", "custom.pth", "model-best.pth.tar", "model.pth.tar-3"]
    assert f'Best checkpoint saved to "{tmp_path}/m/model-best.pth.tar"' in capsys.readouterr().out


def test_own_checkpoints_load_with_weights_only_and_strip_module(tmp_path):
    model, optimizer, scheduler = _training_objects()
    _one_epoch(model, optimizer, scheduler)
    state = _state(model, optimizer, scheduler, 1)
    state["state_dict"] = OrderedDict(("module." + k, v) for k, v in model.state_dict().items())
    save_checkpoint(state, str(tmp_path))
    raw = torch.load(tmp_path / "model.pth.tar-1", weights_only=True)
    assert list(raw["state_dict"]) == ["weight", "bias"]
    assert raw["epoch"] == 1 and raw["val_result"] is None


def test_identical_states_give_identical_bytes(tmp_path):
    model, optimizer, scheduler = _training_objects()
    for folder in ("a", "b"):
        save_checkpoint(_state(model, optimizer, scheduler, 1), str(tmp_path / folder))
    name = "model.pth.tar-1"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_interrupted_save_keeps_previous_file(tmp_path, monkeypatch):
    model, optimizer, scheduler = _training_objects()
    save_checkpoint(_state(model, optimizer, scheduler, 1), str(tmp_path), model_name="f")
    before = (tmp_path / "f").read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(_state(model, optimizer, scheduler, 2), str(tmp_path), model_name="f")
    assert (tmp_path / "f").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "f"]


def test_resume_round_trip_restores_everything(tmp_path, capsys):
    model, optimizer, scheduler = _training_objects()
    _one_epoch(model, optimizer, scheduler)
    _one_epoch(model, optimizer, scheduler)
    save_checkpoint(_state(model, optimizer, scheduler, 2), str(tmp_path))
    model2, optimizer2, scheduler2 = _training_objects(seed=1)
    capsys.readouterr()
    assert resume_from_checkpoint(str(tmp_path), model2, optimizer2, scheduler2) == 2
    assert capsys.readouterr().out == (
        f'Loading checkpoint from "{tmp_path}/model.pth.tar-2"\nLoaded model weights\n'
        "Loaded optimizer\nLoaded scheduler\nPrevious epoch: 2\n"
    )
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    for objects in ((model, optimizer, scheduler), (model2, optimizer2, scheduler2)):
        _one_epoch(*objects)
    assert torch.equal(model.weight, model2.weight)
    assert optimizer.param_groups[0]["lr"] == optimizer2.param_groups[0]["lr"]


def test_load_checkpoint_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="File path is None"):
        load_checkpoint(None)
    with pytest.raises(FileNotFoundError, match='File is not found at ".*nope"'):
        load_checkpoint(str(tmp_path / "nope"))
    model, optimizer, scheduler = _training_objects()
    save_checkpoint(_state(model, optimizer, scheduler, 1), str(tmp_path))
    path = tmp_path / "model.pth.tar-1"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(RuntimeError, match="model.pth.tar-1.*corrupt or truncated"):
        load_checkpoint(str(path))
    assert f'Unable to load checkpoint from "{path}"' in capsys.readouterr().out


class _Opaque:
    """A pickled Python object, as upstream's scheduler state contains."""

    def __init__(self):
        self.value = 7


def test_foreign_pickled_objects_are_refused_unless_trusted(tmp_path, monkeypatch):
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}, "epoch": 5, "scheduler": {"successor": _Opaque()}}, str(path))
    with pytest.raises(UnsafeCheckpointError, match=r"foreign.pth.*_Opaque.*DISA_TRUST_CHECKPOINTS=1"):
        load_checkpoint(str(path))
    monkeypatch.setenv("DISA_TRUST_CHECKPOINTS", "1")
    assert load_checkpoint(str(path))["scheduler"]["successor"].value == 7


class _Shell:
    """Unpickling this would call ``os.system``: torch refuses its module outright."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


def test_blocked_module_is_refused_with_the_same_clear_error(tmp_path):
    path = tmp_path / "shell.pth"
    torch.save({"state_dict": {}, "epoch": 1, "extra": _Shell()}, str(path))
    with pytest.raises(UnsafeCheckpointError, match=r"shell.pth.*system.*DISA_TRUST_CHECKPOINTS"):
        load_checkpoint(str(path))


def test_load_pretrained_weights_matches_name_and_shape(tmp_path, capsys):
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}},
               str(tmp_path / "w.pth"))
    load_pretrained_weights(dst, str(tmp_path / "w.pth"))
    assert torch.equal(dst[0].weight, src[0].weight)
    out = capsys.readouterr().out
    assert f"Successfully loaded pretrained weights from {tmp_path}/w.pth" in out
    assert "Layers discarded due to unmatched keys or size: ['1.weight', '1.bias']" in out
    torch.save({"other": torch.zeros(1)}, str(tmp_path / "x.pth"))
    with pytest.warns(UserWarning, match="Cannot load .*x.pth"):
        load_pretrained_weights(dst, str(tmp_path / "x.pth"))


def test_layer_helpers():
    model = nn.Sequential()
    model.add_module("body", nn.Linear(3, 4))
    model.add_module("head", nn.Linear(4, 2))
    assert count_num_param(model) == 3 * 4 + 4 + 4 * 2 + 2
    assert count_num_param(params=[{"params": model.head.weight}, model.head.bias]) == 10
    open_specified_layers(model, "head")
    assert not model.body.training and not model.body.weight.requires_grad
    assert model.head.training and model.head.weight.requires_grad
    with pytest.raises(AssertionError, match="tail is not an attribute"):
        open_specified_layers(model, ["tail"])
    open_all_layers(model)
    assert all(p.requires_grad for p in model.parameters()) and model.body.training
    torch.manual_seed(0)
    init_network_weights(model, init_type="normal", gain=0.02)
    assert torch.count_nonzero(model.head.bias) == 0
    assert 0.005 < model.body.weight.std().item() < 0.05
    with pytest.raises(NotImplementedError, match="init_type"):
        init_network_weights(model, init_type="uniform")
