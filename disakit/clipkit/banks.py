"""Frozen class-feature banks, computed once per class set (docs/methods/README.md).

Why: KgCoOp, PromptSRC and DiSa regularise towards hand-crafted-prompt features of the frozen
CLIP. Those depend only on the class names, the templates and the backbone, so they are computed
on first use (never in an evaluation-only run that does not need them) and reused for every
training step, and recomputed only when the class set changes (base -> new).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor

from disakit.clipkit.encoders import TextTower
from disakit.clipkit.templates import BankMode, text_bank


class FrozenTextBank:
    """Normalised frozen-CLIP class features (C, E), fp32, for a fixed template set."""

    def __init__(self, templates: Sequence[str], mode: BankMode = "normalized_mean") -> None:
        if not templates:
            raise ValueError("a frozen text bank needs at least one template")
        self.templates = tuple(templates)
        self.mode = mode
        self._key: Optional[tuple] = None
        self._features: Optional[Tensor] = None

    def features(self, tower: TextTower, classnames: Sequence[str]) -> Tensor:
        """The bank for ``classnames`` (computed without gradient on first call, then cached)."""
        key = (tuple(classnames), tower.positional_embedding.device, tower.dtype)
        if key != self._key:
            bank = text_bank(tower, classnames, self.templates, self.mode)
            self._features, self._key = F.normalize(bank, dim=-1), key
        assert self._features is not None  # set together with _key, which now matches
        return self._features
