"""Evaluator registry and builder (Dassl's ``dassl.evaluation.build``)."""
from __future__ import annotations

from typing import Any

from ..utils import Registry, check_availability

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator"]

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg: Any, **kwargs: Any) -> Any:
    """Instantiate the evaluator named by ``cfg.TEST.EVALUATOR`` with ``(cfg, **kwargs)``."""
    avai_evaluators = EVALUATOR_REGISTRY.registered_names()
    check_availability(cfg.TEST.EVALUATOR, avai_evaluators)
    if cfg.VERBOSE:
        print("Loading evaluator: {}".format(cfg.TEST.EVALUATOR))
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
