"""Precision and device policy, decided once per run (docs/methods/README.md#precision).

Nothing else in the toolkit calls ``.half()`` or ``.cuda()``: trainers ask this module to prepare
CLIP's weights and to open the autocast context, and keep learnable tensors in fp32, casting them
to the activation dtype at use.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager, Literal, Optional

import torch
from torch import nn

from disakit.clipkit.compat import clip

PREC_CHOICES = ("fp16", "fp32", "amp")
Prec = Literal["fp16", "fp32", "amp"]


def check_prec(prec: str, key: str = "PREC") -> None:
    """Validate a ``TRAINER.<NAME>.PREC`` value with a message naming the key."""
    if prec not in PREC_CHOICES:
        raise ValueError(f"{key} must be one of {list(PREC_CHOICES)}, got {prec!r}")


@dataclass(frozen=True)
class PrecisionPolicy:
    """The effective precision on a device: fp16 weights, fp32, or fp32 weights + autocast."""

    prec: Prec
    device: torch.device

    @classmethod
    def resolve(cls, prec: str, device: torch.device, verbose: bool = True) -> "PrecisionPolicy":
        """fp16 and amp need CUDA; on CPU both run fp32 (with a note, as the contract asks)."""
        check_prec(prec)
        if device.type != "cuda" and prec != "fp32":
            if verbose:
                print(f"Note: {prec} is not supported on CPU; using fp32")
            prec = "fp32"
        return cls(prec, device)  # type: ignore[arg-type]

    def prepare_clip(self, clip_model: nn.Module) -> nn.Module:
        """Cast CLIP's weights: fp16 exactly as OpenAI's ``build_model`` does, else fp32."""
        clip_model.float()
        if self.prec == "fp16":
            clip.model.convert_weights(clip_model)
        return clip_model.to(self.device)

    def autocast(self) -> ContextManager:
        """Mixed-precision context for ``amp``; a no-op otherwise."""
        if self.prec == "amp":
            return torch.autocast(device_type=self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def grad_scaler(self) -> Optional["torch.amp.GradScaler"]:
        """A loss scaler for ``amp`` (fp16 activations), else None."""
        return torch.amp.GradScaler(self.device.type) if self.prec == "amp" else None


def freeze_all_but(model: nn.Module, trainable: nn.Module) -> list[str]:
    """Freeze every parameter of ``model`` except those of the submodule ``trainable``.

    Returns the sorted names (relative to ``model``) of the parameters left trainable, so that
    trainers can print and tests can assert the trainable set.
    """
    keep = {id(p) for p in trainable.parameters()}
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(id(param) in keep)
        if id(param) in keep:
            names.append(name)
    for param in trainable.parameters():
        param.requires_grad_(True)
    return sorted(names)
