"""Gaussian prompt aggregation (GPA, PromptSRC; docs/methods/promptsrc.md), engine-independent.

Why: PromptSRC's final prompts are a Gaussian-weighted average of the prompts at the end of each
epoch, which smooths the last epochs' noise without a validation set. The running sum is state
that must survive an interrupted run, so it is exposed as a plain dict (tensors + an int) that a
trainer stores in every checkpoint; see :class:`trainers.gpa.GPAMixin` for the engine side.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn


def gpa_weights(mean: float, std: float, epochs: int) -> list[float]:
    """Normal pdf ``N(e; mean, std)`` at epochs ``e = 1..epochs``, normalised to sum to 1."""
    if std <= 0 or epochs < 1:
        raise ValueError(f"GPA needs GPA_STD > 0 and at least one epoch, got std={std}, "
                         f"epochs={epochs}")
    pdf = [math.exp(-0.5 * ((e - mean) / std) ** 2) for e in range(1, epochs + 1)]
    norm = sum(pdf)
    if norm == 0.0:
        raise ValueError(f"GPA_MEAN {mean} is too far from epochs 1..{epochs} for GPA_STD {std}: "
                         "every weight underflows to 0; move the mean into the training epochs")
    return [w / norm for w in pdf]


class PromptAggregator:
    """Running sum ``S = Σ_{e ≤ k} w_e θ_e`` over a module's state dict (its learned prompts)."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = weights
        self.sum: Optional[dict[str, Tensor]] = None
        self.epochs = 0
        self.skipped = 0  # epochs missing from the sum (resumed from a checkpoint without GPA)

    @property
    def complete(self) -> bool:
        """True once every epoch's weight has been added."""
        return self.epochs == len(self.weights)

    @torch.no_grad()
    def accumulate(self, module: nn.Module, epoch: int) -> None:
        """Add ``w_epoch · θ`` (``epoch`` is 1-based) after that epoch's last update."""
        if epoch != self.epochs + 1:
            raise RuntimeError(f"GPA expected epoch {self.epochs + 1}, got {epoch}: an epoch was "
                               "skipped or repeated (resume from a checkpoint with GPA state)")
        weight = self.weights[epoch - 1]
        state = module.state_dict()
        if self.sum is None:
            self.sum = {k: v.detach().clone() * weight for k, v in state.items()}
        else:
            for key, value in state.items():
                self.sum[key] += weight * value.detach()
        self.epochs = epoch

    def skip_to(self, epoch: int) -> None:
        """Continue after ``epoch`` without its history (the aggregate is renormalised)."""
        self.sum, self.epochs, self.skipped = None, epoch, epoch

    def load_into(self, module: nn.Module) -> None:
        """Replace the module's prompts by the aggregate (strict: same keys as accumulated)."""
        if self.sum is None:
            raise RuntimeError("GPA has nothing to load: no epoch was accumulated")
        state = self.sum
        if self.skipped:
            mass = sum(self.weights[self.skipped:self.epochs])
            state = {k: v / mass for k, v in state.items()}
        module.load_state_dict(state)

    def state(self) -> dict:
        """Checkpoint entries ``{"gpa_sum": S or None, "gpa_epochs": k}`` (CPU tensors)."""
        gpa_sum = None if self.sum is None else {k: v.cpu().clone() for k, v in self.sum.items()}
        return {"gpa_sum": gpa_sum, "gpa_epochs": self.epochs}

    def load_state(self, state: dict, device: torch.device) -> None:
        """Restore what :meth:`state` returned (e.g. from a resumed checkpoint)."""
        gpa_sum = state.get("gpa_sum")
        self.sum = None if gpa_sum is None else {k: v.to(device) for k, v in gpa_sum.items()}
        self.epochs = int(state.get("gpa_epochs", 0))
