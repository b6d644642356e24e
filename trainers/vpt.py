"""VPT (deep): learned visual prompts only; the text side is a fixed hand-crafted prompt
``"<CTX_INIT> <class>."`` (docs/methods/vpt.md; a variant from the MaPLe paper's ablations)."""
from __future__ import annotations

from dataclasses import dataclass

from disakit.bundle import bundled_trainer
from disakit.clipkit.deep_prompts import DeepPromptSpec
from disakit.trainers.ivlp import IVLP, DeepPromptSettings


@dataclass(frozen=True)
class VPTSettings(DeepPromptSettings):
    """``TRAINER.VPT`` (docs/methods/vpt.md): visual prompts only."""

    NODE = "VPT"

    n_ctx_vision: int
    prompt_depth_vision: int
    ctx_init: str

    def prompt_spec(self) -> DeepPromptSpec:
        """Text depth 0: the text side is the fixed phrase ``CTX_INIT``."""
        return DeepPromptSpec(0, 0, self.n_ctx_vision, self.prompt_depth_vision, self.ctx_init)


@bundled_trainer
class VPT(IVLP):
    """IVLP with text prompt depth 0: nothing is learned in the text tower."""

    SETTINGS = VPTSettings

    settings: VPTSettings
