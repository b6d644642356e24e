"""Trainer registry and builder (Dassl's ``dassl.engine.build``)."""
from __future__ import annotations

from typing import Any

from ..utils import Registry, check_availability

__all__ = ["TRAINER_REGISTRY", "build_trainer"]

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg: Any) -> Any:
    """Instantiate the trainer named by ``cfg.TRAINER.NAME`` (trainer modules must be imported)."""
    avai_trainers = TRAINER_REGISTRY.registered_names()
    check_availability(cfg.TRAINER.NAME, avai_trainers)
    if cfg.VERBOSE:
        print("Loading trainer: {}".format(cfg.TRAINER.NAME))
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
