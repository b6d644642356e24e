"""VPT (deep): learned visual prompts only; the text side is a fixed hand-crafted prompt
``"<CTX_INIT> <class>."`` (docs/methods/vpt.md; a variant from the MaPLe paper's ablations)."""
from __future__ import annotations

from disakit.bundle import bundled_trainer
from disakit.clipkit.deep_prompts import DeepPromptSpec
from disakit.trainers.ivlp import IVLP


@bundled_trainer
class VPT(IVLP):
    """IVLP with text prompt depth 0: nothing is learned in the text tower."""

    CFG_NODE = "VPT"

    def prompt_spec(self) -> DeepPromptSpec:
        opts = self.opts
        return DeepPromptSpec(0, 0, opts.N_CTX_VISION, opts.PROMPT_DEPTH_VISION, opts.CTX_INIT)
