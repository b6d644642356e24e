"""Per-epoch LR schedulers with warm-up (Dassl's ``dassl.optim.lr_scheduler``; docs/engine.md).

The scheduler is stepped once at the end of each epoch. The warm-up wrappers run their own
schedule for ``warmup_epoch`` epochs, then hand over to the wrapped ``successor``. Unlike
upstream, they never pass ``verbose`` (rejected by current PyTorch) and their ``state_dict``
holds only plain data (``{"wrapper": ..., "successor": successor.state_dict()}``), so
checkpoints load with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Union

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, MultiStepLR, StepLR

__all__ = [
    "AVAI_SCHEDS",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
    "build_lr_scheduler",
]

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):
    """Run ``get_lr`` for the first ``warmup_epoch`` epochs, then step ``successor``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        last_epoch: int = -1,
    ) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[Union[float, torch.Tensor]]:
        raise NotImplementedError

    def step(self, epoch: Any = None) -> None:
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self) -> Dict[str, Any]:
        """Plain-data state: the wrapper's own fields and the successor's ``state_dict``."""
        wrapper = {
            k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")
        }
        return {"wrapper": wrapper, "successor": self.successor.state_dict()}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """Restore our format, or upstream's flat dict that pickles the successor object."""
        if "wrapper" in state_dict:
            self.__dict__.update(state_dict["wrapper"])
            self.successor.load_state_dict(state_dict["successor"])
            return
        state = dict(state_dict)
        successor = state.pop("successor", None)
        self.__dict__.update(state)
        if successor is not None:
            self.successor.load_state_dict(successor.state_dict())


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """LR ``cons_lr`` during warm-up (the family setting: 1 epoch at 1e-5)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        cons_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> List[Union[float, torch.Tensor]]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """LR ``min_lr`` at epoch 0, then ``base_lr * epoch / warmup_epoch`` until warm-up ends."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        min_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def get_lr(self) -> List[Union[float, torch.Tensor]]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def _single_step(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    stepsize = optim_cfg.STEPSIZE
    if isinstance(stepsize, (list, tuple)):
        stepsize = stepsize[-1]
    if not isinstance(stepsize, int):
        raise TypeError(
            "For single_step lr_scheduler, stepsize must "
            f"be an integer, but got {type(stepsize)} (OPTIM.STEPSIZE)"
        )
    if stepsize <= 0:
        stepsize = optim_cfg.MAX_EPOCH
    return StepLR(optimizer, step_size=stepsize, gamma=optim_cfg.GAMMA)


def _multi_step(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    stepsize = optim_cfg.STEPSIZE
    if not isinstance(stepsize, (list, tuple)):
        raise TypeError(
            "For multi_step lr_scheduler, stepsize must "
            f"be a list, but got {type(stepsize)} (OPTIM.STEPSIZE)"
        )
    return MultiStepLR(optimizer, milestones=list(stepsize), gamma=optim_cfg.GAMMA)


def _cosine(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    # T_max stays a float as in Dassl (it is saved in the scheduler state); the stub says int.
    return CosineAnnealingLR(optimizer, float(optim_cfg.MAX_EPOCH))  # type: ignore[arg-type]


_BUILDERS = {"single_step": _single_step, "multi_step": _multi_step, "cosine": _cosine}


def _wrap_warmup(
    optimizer: torch.optim.Optimizer, successor: LRScheduler, optim_cfg: Any
) -> LRScheduler:
    if not optim_cfg.WARMUP_RECOUNT:
        successor.last_epoch = optim_cfg.WARMUP_EPOCH
    if optim_cfg.WARMUP_TYPE == "constant":
        return ConstantWarmupScheduler(
            optimizer, successor, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR
        )
    if optim_cfg.WARMUP_TYPE == "linear":
        return LinearWarmupScheduler(
            optimizer, successor, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR
        )
    raise ValueError(
        "OPTIM.WARMUP_TYPE must be 'constant' or 'linear', "
        f"but got {optim_cfg.WARMUP_TYPE!r}"
    )


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: Any) -> LRScheduler:
    """Build the per-epoch scheduler named by ``OPTIM.LR_SCHEDULER`` (plus optional warm-up).

    Why: every trainer gets the same schedule from the same keys, stepped once per epoch, so
    the LR sequence matches Dassl's exactly (docs/engine.md#optimisers-and-lr-schedules).
    """
    name = optim_cfg.LR_SCHEDULER
    if name not in AVAI_SCHEDS:
        raise ValueError(f"scheduler must be one of {AVAI_SCHEDS}, but got {name}")
    scheduler = _BUILDERS[name](optimizer, optim_cfg)
    if optim_cfg.WARMUP_EPOCH > 0:
        scheduler = _wrap_warmup(optimizer, scheduler, optim_cfg)
    return scheduler
