"""Optimizer factory and the per-epoch LR schedule (values: docs/engine.md table)."""
import io
import math

import pytest
import torch
import torch.nn as nn

from disakit.dasslite.config import get_cfg_default
from disakit.dasslite.optim import (
    ConstantWarmupScheduler,
    LinearWarmupScheduler,
    build_lr_scheduler,
    build_optimizer,
)


def _optim_cfg(**overrides):
    cfg = get_cfg_default().OPTIM
    cfg.merge_from_other_cfg(type(cfg)({"NAME": "sgd", "LR_SCHEDULER": "cosine",
                                        "WARMUP_EPOCH": 1, "WARMUP_TYPE": "constant"}))
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _build(cfg):
    model = nn.Linear(2, 2)
    optimizer = build_optimizer(model, cfg)
    return optimizer, build_lr_scheduler(optimizer, cfg)


def _run(optimizer, scheduler, n_epochs):
    """LR in effect during each epoch, stepping once per epoch as the trainers do."""
    lrs = []
    for _ in range(n_epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def _lr_sequence(**overrides):
    cfg = _optim_cfg(**overrides)
    return _run(*_build(cfg), cfg.MAX_EPOCH)


def _fmt(values):
    return ["%.4e" % v for v in values]


PROMPTSRC_E20 = [
    1.0e-5, 2.5e-3, 2.4846e-03, 2.4388e-03, 2.3638e-03,
    2.2613e-03, 2.1339e-03, 1.9847e-03, 1.8175e-03, 1.6363e-03, 1.4455e-03, 1.2500e-03,
    1.0545e-03, 8.6373e-04, 6.8251e-04, 5.1527e-04, 3.6612e-04, 2.3873e-04, 1.3624e-04,
    6.1179e-05,
]


def test_promptsrc_full_sequence():
    assert _fmt(_lr_sequence(MAX_EPOCH=20, LR=0.0025)) == _fmt(PROMPTSRC_E20)


def test_maple_sequences():
    assert _fmt(_lr_sequence(MAX_EPOCH=5, LR=0.0035)) == _fmt(
        [1e-5, 3.5e-3, 3.1658e-3, 2.2908e-3, 1.2092e-3])
    assert _fmt(_lr_sequence(MAX_EPOCH=2, LR=0.0026)) == _fmt([1e-5, 2.6e-3])


@pytest.mark.parametrize("epochs, lr, head, tail", [
    (10, 0.002, [1e-5, 2e-3, 1.9511e-3, 1.8090e-3, 1.5878e-3], [4.1221e-4, 1.9098e-4]),
    (50, 0.0025, [1e-5, 2.5e-3, 2.4975e-3], [2.2141e-05, 9.8566e-06]),
    (50, 0.002, [1e-5, 2e-3, 1.9980e-3], [1.7713e-05, 7.8853e-06]),
    (100, 0.002, [1e-5, 2e-3, 1.9995e-3], [4.4380e-06, 1.9733e-06]),
    (200, 0.002, [1e-5, 2e-3, 1.9999e-3], [1.1101e-06, 4.9344e-07]),
])
def test_table_rows(epochs, lr, head, tail):
    seq = _lr_sequence(MAX_EPOCH=epochs, LR=lr)
    assert _fmt(seq[: len(head)]) == _fmt(head)
    assert _fmt(seq[-2:]) == _fmt(tail)


def test_linear_warmup_example():
    seq = _lr_sequence(MAX_EPOCH=10, LR=0.01, WARMUP_EPOCH=3, WARMUP_TYPE="linear")
    assert _fmt(seq[:5]) == _fmt([1e-5, 3.3333e-3, 6.6667e-3, 1.0e-2, 9.7553e-3])


def test_cosine_without_warmup_matches_closed_form():
    seq = _lr_sequence(MAX_EPOCH=7, LR=0.1, WARMUP_EPOCH=-1)
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * e / 7)) for e in range(7)]
    assert seq == pytest.approx(expected, rel=1e-9)


def test_step_schedulers():
    seq = _lr_sequence(MAX_EPOCH=6, LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(2,),
                       GAMMA=0.5, WARMUP_EPOCH=-1)
    assert seq == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    seq = _lr_sequence(MAX_EPOCH=6, LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(1, 4),
                       GAMMA=0.1, WARMUP_EPOCH=-1)
    assert seq == pytest.approx([1, 0.1, 0.1, 0.1, 0.01, 0.01])
    seq = _lr_sequence(MAX_EPOCH=3, LR=1.0, LR_SCHEDULER="single_step", WARMUP_EPOCH=-1)
    assert seq == pytest.approx([1, 1, 1])  # stepsize -1 -> MAX_EPOCH


def test_scheduler_errors():
    with pytest.raises(ValueError, match="scheduler must be one of"):
        _build(_optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(TypeError, match="stepsize must be a list"):
        _build(_optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=3))
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        _build(_optim_cfg(WARMUP_TYPE="exp"))


@pytest.mark.parametrize("warmup_type, warmup, stop_after", [
    ("constant", 1, 0), ("constant", 1, 1), ("constant", 1, 4),
    ("linear", 3, 1), ("linear", 3, 3), ("linear", 3, 5),
])
def test_warmup_state_round_trip_gives_same_lr_sequence(warmup_type, warmup, stop_after):
    cfg = _optim_cfg(MAX_EPOCH=8, LR=0.01, WARMUP_TYPE=warmup_type, WARMUP_EPOCH=warmup)
    full = _run(*_build(cfg), 8)
    optimizer, scheduler = _build(cfg)
    first = _run(optimizer, scheduler, stop_after)
    buffer = io.BytesIO()
    torch.save({"o": optimizer.state_dict(), "s": scheduler.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)  # plain data only
    optimizer2, scheduler2 = _build(cfg)
    optimizer2.load_state_dict(state["o"])
    scheduler2.load_state_dict(state["s"])
    assert first + _run(optimizer2, scheduler2, 8 - stop_after) == full


def test_warmup_loads_upstream_state_with_pickled_successor():
    cfg = _optim_cfg(MAX_EPOCH=6, LR=0.01)
    full = _run(*_build(cfg), 6)
    optimizer, scheduler = _build(cfg)
    first = _run(optimizer, scheduler, 3)
    upstream_state = dict(scheduler.state_dict()["wrapper"], successor=scheduler.successor)
    optimizer2, scheduler2 = _build(cfg)
    optimizer2.load_state_dict(optimizer.state_dict())
    scheduler2.load_state_dict(upstream_state)
    assert first + _run(optimizer2, scheduler2, 3) == full


def test_wrapper_types():
    assert isinstance(_build(_optim_cfg())[1], ConstantWarmupScheduler)
    assert isinstance(_build(_optim_cfg(WARMUP_TYPE="linear"))[1], LinearWarmupScheduler)


def test_build_optimizer_family_sgd_and_errors():
    cfg = _optim_cfg(LR=0.002)
    opt = build_optimizer(nn.Linear(2, 2), cfg)
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD)
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (0.002, 0.9, 5e-4)
    for name, cls in [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                      ("rmsprop", torch.optim.RMSprop), ("radam", torch.optim.RAdam)]:
        assert type(build_optimizer(nn.Linear(2, 2), _optim_cfg(NAME=name))) is cls
    assert build_optimizer(nn.Linear(2, 2), _optim_cfg(NAME="amsgrad")).param_groups[0]["amsgrad"]
    with pytest.raises(ValueError, match="optim must be one of"):
        build_optimizer(nn.Linear(2, 2), _optim_cfg(NAME="lion"))


def test_build_optimizer_staged_lr():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 3))
    cfg = _optim_cfg(LR=1.0, STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1)
    groups = build_optimizer(model, cfg).param_groups
    assert [g["lr"] for g in groups] == [0.1, 1.0]
    assert groups[1]["params"][0] is model.head.weight
