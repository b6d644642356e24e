"""IVLP: independent deep text and visual prompts on a frozen CLIP (docs/methods/ivlp.md).

Also the base of PromptSRC and VPT, which differ only in their losses or prompt depths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.deep_prompts import DeepPromptedCLIP, DeepPromptSpec, VLPromptLearner
from disakit.clipkit.model import PromptedCLIP
from disakit.trainers.base import PromptTrainer
from disakit.trainers.settings import PromptSettings


@dataclass(frozen=True)
class DeepPromptSettings(PromptSettings):
    """Settings of a trainer on deep prompts (IVLP, VPT, PromptSRC, DiSa): their prompt lengths
    and depths as a :class:`DeepPromptSpec` (checked against the backbone when built)."""

    def prompt_spec(self) -> DeepPromptSpec:
        raise NotImplementedError


@dataclass(frozen=True)
class IVLPSettings(DeepPromptSettings):
    """``TRAINER.IVLP`` (docs/methods/ivlp.md); also the prompt keys of PromptSRC and DiSa."""

    NODE = "IVLP"

    n_ctx_text: int
    n_ctx_vision: int
    prompt_depth_text: int
    prompt_depth_vision: int
    ctx_init: str

    def validate(self) -> None:
        super().validate()
        if self.prompt_depth_text < 1:
            raise self.error("PROMPT_DEPTH_TEXT", "must be >= 1 (the text context is learned), "
                             f"got {self.prompt_depth_text}", self.fix("PROMPT_DEPTH_TEXT",
                                                                       "a depth of 1 or more"))

    def prompt_spec(self) -> DeepPromptSpec:
        return DeepPromptSpec(self.n_ctx_text, self.prompt_depth_text, self.n_ctx_vision,
                              self.prompt_depth_vision, self.ctx_init)


@bundled_trainer
class IVLP(PromptTrainer):
    """Independent vision-language prompting, trained with cross-entropy only."""

    SETTINGS: ClassVar[type[DeepPromptSettings]] = IVLPSettings  # VPT: VPTSettings
    MODEL_NAME = "VLPromptLearner"
    SUMMARY_ACC = False

    model: DeepPromptedCLIP
    settings: DeepPromptSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """IVLP's model: learned text context + deep text prompts, independent visual prompts."""
        spec = self.settings.prompt_spec()
        print("Independent V-L design")
        print(f"Number of context words (tokens) for Language prompting: {spec.text_tokens}")
        print(f"Number of context words (tokens) for Vision prompting: {spec.vision_tokens}")
        model = DeepPromptedCLIP(clip_model, lambda t, v: VLPromptLearner(t, v, spec), classnames)
        print(f'Initial text context: "{model.prompt_learner.prefix_text}"')
        return model
