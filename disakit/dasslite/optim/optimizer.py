"""Optimizer factory (Dassl's ``dassl.optim.optimizer``; docs/engine.md)."""
from __future__ import annotations

import warnings
from typing import Any, Iterable, List, Optional, Union

import torch
import torch.nn as nn

__all__ = ["AVAI_OPTIMS", "build_optimizer"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model: Union[nn.Module, Iterable[Any]], optim_cfg: Any) -> List[dict]:
    """Children in ``NEW_LAYERS`` train at ``LR``; all others at ``LR * BASE_LR_MULT``."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            "When staged_lr is True, model given to "
            "build_optimizer() must be an instance of nn.Module"
        )
    net: nn.Module = model.module if isinstance(model, nn.DataParallel) else model
    new_layers = optim_cfg.NEW_LAYERS
    if isinstance(new_layers, str):
        new_layers = [new_layers]
    if not new_layers:
        warnings.warn("new_layers is empty (staged_lr is useless)", stacklevel=2)
    base_params: List[nn.Parameter] = []
    new_params: List[nn.Parameter] = []
    for name, module in net.named_children():
        target = new_params if name in new_layers else base_params
        target.extend(module.parameters())
    return [
        {"params": base_params, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT},
        {"params": new_params},
    ]


def _param_groups(
    model: Union[nn.Module, Iterable[Any]], optim_cfg: Any, param_groups: Optional[Any]
) -> Any:
    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            warnings.warn(
                "staged_lr will be ignored, if you need to use staged_lr, "
                "please bind it with param_groups yourself.",
                stacklevel=2,
            )
        return param_groups
    if optim_cfg.STAGED_LR:
        return _staged_param_groups(model, optim_cfg)
    return model.parameters() if isinstance(model, nn.Module) else model


def _make(name: str, params: Any, c: Any) -> torch.optim.Optimizer:
    betas = (c.ADAM_BETA1, c.ADAM_BETA2)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(
            params, lr=c.LR, weight_decay=c.WEIGHT_DECAY, betas=betas, amsgrad=name == "amsgrad"
        )
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=c.LR, momentum=c.MOMENTUM, weight_decay=c.WEIGHT_DECAY,
            dampening=c.SGD_DAMPNING, nesterov=c.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params, lr=c.LR, momentum=c.MOMENTUM, weight_decay=c.WEIGHT_DECAY,
            alpha=c.RMSPROP_ALPHA,
        )
    if name == "radam":  # torch's RAdam stands in for Dassl's own implementation
        return torch.optim.RAdam(params, lr=c.LR, weight_decay=c.WEIGHT_DECAY, betas=betas)
    return torch.optim.AdamW(params, lr=c.LR, weight_decay=c.WEIGHT_DECAY, betas=betas)


def build_optimizer(
    model: Union[nn.Module, Iterable[Any]], optim_cfg: Any, param_groups: Optional[Any] = None
) -> torch.optim.Optimizer:
    """Build the optimizer named by ``OPTIM.NAME`` over ``model`` (or ``param_groups``).

    All parameters are handed over, frozen ones included: they never get a gradient, so
    ``step()`` skips them. With the family configs this is SGD, momentum 0.9, weight decay 5e-4.
    """
    name = optim_cfg.NAME
    if name not in AVAI_OPTIMS:
        raise ValueError(f"optim must be one of {AVAI_OPTIMS}, but got {name}")
    return _make(name, _param_groups(model, optim_cfg, param_groups), optim_cfg)
