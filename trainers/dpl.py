"""DPL: Decoupled Prompt Learning (Xu et al., arXiv 2308.10061), reconstructed as DPL-R.

No official code or equations are public; docs/methods/dpl.md gives the toolkit's reconstruction:
every choice in it is a ``TRAINER.DPL.*`` key. In both towers the instances (the hand-crafted
sentence ``TEXT_TEMPLATE`` / CLS + patches) keep CLIP's frozen attention among themselves; m
prompt tokens per tower join every layer through decoupled attention (:mod:`clipkit.decoupled`):
instances read the prompts through a zero-initialised gate, prompts read the whole sentence or
image (so text prompts are conditioned on the class name). Loss: cross-entropy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.banks import FrozenTextBank
from disakit.clipkit.decoupled import (
    DecoupledAttention,
    DecoupledPrompts,
    I2PMode,
    P2IMode,
    P2PMode,
    PromptUpdate,
    encode_image_decoupled,
    encode_text_decoupled,
)
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import clean_classname, tokenize
from disakit.clipkit.templates import custom_template
from disakit.trainers.base import PromptTrainer
from disakit.trainers.config import ConfigError
from disakit.trainers.settings import PromptSettings, setting

Modality = Literal["both", "text", "vision"]
_KEY = "TRAINER.DPL."


@dataclass(frozen=True)
class DPLSettings(PromptSettings):
    """``TRAINER.DPL`` turned into typed, validated values once (the model never reads yacs);
    ``TEXT_TEMPLATE custom`` is the dataset's hand-crafted template (``DATASET.NAME``)."""

    NODE = "DPL"

    n_ctx_text: int
    n_ctx_vision: int
    prompt_depth_text: int
    prompt_depth_vision: int
    modality: Modality
    text_template: str
    i2p: I2PMode
    p2i: P2IMode
    p2p: P2PMode
    prompt_update: PromptUpdate
    gate_init: float
    gate_per_head: bool
    dataset_name: str = setting("DATASET.NAME")

    def validate(self) -> None:
        """The attention combination and the instance template (one ``{}``)."""
        super().validate()
        try:
            _ = self.attention  # DecoupledAttention checks the combination
        except ValueError as err:
            raise ConfigError(f"{err} ({_KEY}P2I, {_KEY}P2P)") from None
        if self.template.count("{}") != 1:
            raise self.error("TEXT_TEMPLATE", "must contain one '{}' for the class name (or be "
                             f"'custom'), got {self.text_template!r}",
                             self.fix("TEXT_TEMPLATE", "a template such as 'a photo of a {}.'"))

    @property
    def template(self) -> str:
        """The instance sentence's template: ``TEXT_TEMPLATE``, or the dataset's (custom)."""
        if self.text_template.lower() == "custom":
            return custom_template(self.dataset_name)
        return self.text_template

    @property
    def attention(self) -> DecoupledAttention:
        """``I2P``, ``P2I``, ``P2P`` (a ValueError for a combination that cannot run)."""
        return DecoupledAttention(self.i2p, self.p2i, self.p2p)

    @property
    def text_prompted(self) -> bool:
        return self.modality in ("both", "text")

    @property
    def vision_prompted(self) -> bool:
        return self.modality in ("both", "vision")

    def tower_prompts(self, tower: str, width: int, n_layers: int,
                      n_heads: int) -> DecoupledPrompts:
        """The learnable state of one tower (``tower`` is ``text`` or ``vision``)."""
        n_tokens, depth = ((self.n_ctx_text, self.prompt_depth_text) if tower == "text"
                           else (self.n_ctx_vision, self.prompt_depth_vision))
        if n_tokens < 1 or not 1 <= depth <= n_layers:
            key = tower.upper()
            raise ConfigError(
                f"{_KEY}N_CTX_{key} ({n_tokens}) must be >= 1 and {_KEY}PROMPT_DEPTH_{key} "
                f"({depth}) between 1 and the {tower} tower's {n_layers} layers with MODALITY "
                f"{self.modality}; fix them or prompt only the other tower (MODALITY)")
        return DecoupledPrompts(n_tokens, width, depth, n_layers, n_heads, self.attention,
                                self.prompt_update, self.gate_init, self.gate_per_head)


class DPLPromptLearner(nn.Module):
    """Everything DPL learns: per tower, the prompt inputs Δ and the I->P gates (or None for a
    tower left frozen by ``MODALITY``). 46,320 parameters at 4+4 tokens, depth 9, ViT-B/16."""

    def __init__(self, text: Optional[DecoupledPrompts],
                 vision: Optional[DecoupledPrompts]) -> None:
        super().__init__()
        self.text = text
        self.vision = vision

    @torch.no_grad()
    def gate_magnitude(self) -> float:
        """Mean ``|tanh(g)|`` over both towers (0 without gates): near 0 = still zero-shot CLIP."""
        gates = [t.gate for t in (self.text, self.vision) if t is not None and t.gate is not None]
        if not gates:
            return 0.0
        return torch.cat([torch.tanh(g).abs().flatten() for g in gates]).mean().item()


class DPLCLIP(PromptedCLIP):
    """CLIP whose towers run decoupled attention with DPL prompts; a tower not prompted
    (``MODALITY``) is the frozen CLIP on ``TEXT_TEMPLATE`` / the plain image."""

    prompt_learner: DPLPromptLearner
    tokens: Tensor  # non-persistent buffer (set_classnames)

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str],
                 settings: DPLSettings) -> None:
        super().__init__(clip_model)
        text = vision = None
        if settings.text_prompted:
            text = settings.tower_prompts("text", self.text.width, self.text.num_layers,
                                          self.text.num_heads)
        if settings.vision_prompted:
            if not self.vision.is_vit:
                raise ValueError(f"{_KEY}MODALITY {settings.modality} prompts the image tower, "
                                 "which needs a ViT backbone; use MODALITY text")
            vision = settings.tower_prompts("vision", self.vision.width, self.vision.num_layers,
                                            self.vision.num_heads)
        self.prompt_learner = DPLPromptLearner(text, vision)
        self.template = settings.template
        self.frozen_text = None if text is not None else FrozenTextBank([settings.template])
        self.set_classnames(classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        """Tokenize ``TEXT_TEMPLATE`` per class, kept up to the longest EOT (non-persistent)."""
        tokens = tokenize([self.template.format(clean_classname(c)) for c in classnames])
        tokens = tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]
        self.register_buffer("tokens", tokens.to(self.logit_scale.device), persistent=False)
        self.classnames = list(classnames)

    def text_features(self) -> Tensor:
        learned = self.prompt_learner.text
        if learned is None:
            assert self.frozen_text is not None  # built exactly when text is not prompted
            return self.frozen_text.features(self.text, self.classnames)
        return F.normalize(encode_text_decoupled(self.text, self.tokens, learned), dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        learned = self.prompt_learner.vision
        if learned is None:
            return self.frozen_image_features(images)
        return F.normalize(encode_image_decoupled(self.vision, images, learned), dim=-1)


@bundled_trainer
class DPL(PromptTrainer):
    """Decoupled prompt learning, cross-entropy only; logs the mean gate magnitude ``gate``."""

    SETTINGS = DPLSettings
    model: DPLCLIP
    settings: DPLSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """DPL-R's model: decoupled attention in the prompted tower(s), template instances."""
        settings = self.settings
        print(f"DPL-R (reconstruction): modality {settings.modality}, I2P {settings.i2p}, P2I "
              f"{settings.p2i}, P2P {settings.p2p}, prompt update {settings.prompt_update}")
        print(f'Instance sentence: "{settings.template}"')
        return DPLCLIP(clip_model, classnames, settings)

    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy (the paper states no auxiliary term) plus the gate diagnostic."""
        loss, summary = super().compute_loss(images, labels)
        summary["gate"] = self.model.prompt_learner.gate_magnitude()
        return loss, summary
