"""The shape every method's model shares: CLIP's two towers + one prompt learner.

A method subclasses :class:`PromptedCLIP` and says only how its prompted text and image
features are made. Logits, the frozen (prompt-free) passes and the class-set switch live here
once. Frozen and prompted passes use the *same* CLIP weights (the towers hold references).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.clipkit.encoders import TextTower, VisionTower


class PromptedCLIP(nn.Module):
    """Base model: ``prompt_learner`` holds everything that is learned (and checkpointed)."""

    prompt_learner: nn.Module

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.text = TextTower(clip_model)
        self.vision = VisionTower(clip_model)
        stock: Any = clip_model  # a stock clip.model.CLIP (clipkit.encoders, typing note)
        self.logit_scale: nn.Parameter = stock.logit_scale

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Gradient (activation) checkpointing in both towers' block loops, off by default
        (``MODEL.GRAD_CHECKPOINTING``): while gradients are recorded, each block's activations
        are recomputed in the backward pass instead of stored. Less memory for about one more
        forward pass of time; the loss and the gradients are the same."""
        self.text.set_grad_checkpointing(enabled)
        self.vision.set_grad_checkpointing(enabled)

    # -- what a method defines ------------------------------------------------------------
    def text_features(self) -> Tensor:
        """Normalised prompted class features (C, E)."""
        raise NotImplementedError

    def image_features(self, images: Tensor) -> Tensor:
        """Normalised prompted image features (B, E)."""
        raise NotImplementedError

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Rebuild class-dependent buffers (prompt tokens, frozen banks) for a class set."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------
    @property
    def scale(self) -> Tensor:
        """``exp(logit_scale)`` (100 for pretrained CLIP), detached: it is never learned."""
        return self.logit_scale.detach().exp().float()

    def logits(self, image_feats: Tensor, text_feats: Tensor) -> Tensor:
        """Scaled cosine logits in fp32 (losses are always computed in fp32)."""
        with torch.autocast(image_feats.device.type, enabled=False):  # fp32 even under amp
            return self.scale * image_feats.float() @ text_feats.float().t()

    def forward(self, images: Tensor, text_feats: Optional[Tensor] = None) -> Tensor:
        """Class logits; pass cached ``text_feats`` at evaluation to skip the text tower."""
        if text_feats is None:
            text_feats = self.text_features()
        return self.logits(self.image_features(images), text_feats)

    @torch.no_grad()
    def frozen_image_features(self, images: Tensor) -> Tensor:
        """Zero-shot CLIP image features (prompts off), normalised, without gradient."""
        return F.normalize(self.vision(images).features.float(), dim=-1)
