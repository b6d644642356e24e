"""Optimizers and LR schedulers (``dassl.optim``)."""
from .lr_scheduler import (
    AVAI_SCHEDS,
    ConstantWarmupScheduler,
    LinearWarmupScheduler,
    build_lr_scheduler,
)
from .optimizer import AVAI_OPTIMS, build_optimizer

__all__ = [
    "build_optimizer", "build_lr_scheduler", "AVAI_OPTIMS", "AVAI_SCHEDS",
    "ConstantWarmupScheduler", "LinearWarmupScheduler",
]
