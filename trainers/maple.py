"""MaPLe: coupled multi-modal prompts, visual ones projected from text (docs/methods/maple.md)."""
from __future__ import annotations

from torch import nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.deep_prompts import DeepPromptedCLIP, MultiModalPromptLearner
from disakit.clipkit.model import PromptedCLIP
from disakit.trainers.base import PromptTrainer


@bundled_trainer
class MaPLe(PromptTrainer):
    """Multi-modal prompt learning, trained with cross-entropy only."""

    CFG_NODE = "MAPLE"
    MODEL_NAME = "MultiModalPromptLearner"
    SUMMARY_ACC = False

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """MaPLe's model: text prompts in layers 0..J-1, each coupled to its visual prompt."""
        opts = self.opts
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f"Number of MaPLe context words (tokens): {opts.N_CTX}")
        model = DeepPromptedCLIP(
            clip_model,
            lambda t, v: MultiModalPromptLearner(t, v, opts.N_CTX, opts.PROMPT_DEPTH, opts.CTX_INIT),
            classnames)
        print(f'Initial context: "{model.prompt_learner.prefix_text}"')
        return model
