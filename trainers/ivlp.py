"""IVLP: independent deep text and visual prompts on a frozen CLIP (docs/methods/ivlp.md).

Also the base of PromptSRC and VPT, which differ only in their losses or prompt depths.
"""
from __future__ import annotations

from torch import nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.deep_prompts import DeepPromptedCLIP, DeepPromptSpec, VLPromptLearner
from disakit.clipkit.model import PromptedCLIP
from disakit.trainers.base import PromptTrainer


def deep_prompt_spec(opts) -> DeepPromptSpec:
    """The prompt lengths/depths of a ``TRAINER.<IVLP|PROMPTSRC|DISA>`` config node."""
    return DeepPromptSpec(opts.N_CTX_TEXT, opts.PROMPT_DEPTH_TEXT, opts.N_CTX_VISION,
                          opts.PROMPT_DEPTH_VISION, opts.CTX_INIT)


@bundled_trainer
class IVLP(PromptTrainer):
    """Independent vision-language prompting, trained with cross-entropy only."""

    CFG_NODE = "IVLP"
    MODEL_NAME = "VLPromptLearner"
    SUMMARY_ACC = False

    def prompt_spec(self) -> DeepPromptSpec:
        spec = deep_prompt_spec(self.opts)
        if spec.depth_text < 1:
            raise ValueError(f"TRAINER.{self.CFG_NODE}.PROMPT_DEPTH_TEXT must be >= 1 (the text "
                             f"context is learned), got {spec.depth_text}")
        return spec

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """IVLP's model: learned text context + deep text prompts, independent visual prompts."""
        spec = self.prompt_spec()
        print("Independent V-L design")
        print(f"Number of context words (tokens) for Language prompting: {spec.text_tokens}")
        print(f"Number of context words (tokens) for Vision prompting: {spec.vision_tokens}")
        model = DeepPromptedCLIP(clip_model, lambda t, v: VLPromptLearner(t, v, spec), classnames)
        print(f'Initial text context: "{model.prompt_learner.prefix_text}"')
        return model
