"""MaPLe: coupled multi-modal prompts, visual ones projected from text (docs/methods/maple.md)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.deep_prompts import DeepPromptedCLIP, MultiModalPromptLearner
from disakit.clipkit.model import PromptedCLIP
from disakit.trainers.base import PromptTrainer
from disakit.trainers.settings import PromptSettings


@dataclass(frozen=True)
class MaPLeSettings(PromptSettings):
    """``TRAINER.MAPLE`` (docs/methods/maple.md); ``PROMPT_DEPTH`` is checked against the
    backbone when the model is built."""

    NODE = "MAPLE"

    n_ctx: int
    ctx_init: str
    prompt_depth: int


@bundled_trainer
class MaPLe(PromptTrainer):
    """Multi-modal prompt learning, trained with cross-entropy only."""

    SETTINGS = MaPLeSettings
    MODEL_NAME = "MultiModalPromptLearner"
    SUMMARY_ACC = False

    settings: MaPLeSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """MaPLe's model: text prompts in layers 0..J-1, each coupled to its visual prompt."""
        s = self.settings
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f"Number of MaPLe context words (tokens): {s.n_ctx}")
        model = DeepPromptedCLIP(
            clip_model,
            lambda t, v: MultiModalPromptLearner(t, v, s.n_ctx, s.prompt_depth, s.ctx_init),
            classnames)
        print(f'Initial context: "{model.prompt_learner.prefix_text}"')
        return model
