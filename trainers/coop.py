"""CoOp (Zhou et al., IJCV 2022): learned text context, frozen image tower; docs/methods/coop.md."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import PromptContext, init_context
from disakit.trainers.base import PromptTrainer


class CoOpCLIP(PromptedCLIP):
    """CLIP whose class prompts are ``[SOT][ctx][class][.][EOT]`` with a learned ``ctx``."""

    def __init__(self, clip_model: nn.Module, classnames: list[str], opts) -> None:
        super().__init__(clip_model)
        init = init_context(self.text.embed, self.text.width, opts.N_CTX, opts.CTX_INIT,
                            policy="words", n_cls=len(classnames) if opts.CSC else None)
        print(f'Initial context: "{init.prefix_text}"')
        print(f"Number of context words (tokens): {init.n_ctx}")
        self.prompt_learner = PromptContext(init, opts.CLASS_TOKEN_POSITION)
        self.set_classnames(classnames)

    def set_classnames(self, classnames: list[str]) -> None:
        self.prompt_learner.set_classnames(classnames, self.text.embed)

    def text_features(self) -> Tensor:
        embeds, eot = self.prompt_learner()
        return F.normalize(self.text.encode_embeddings(embeds, eot), dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        return F.normalize(self.vision(images).features, dim=-1)


@bundled_trainer
class CoOp(PromptTrainer):
    """Context Optimization: cross-entropy on prompted-text / frozen-image logits."""

    CFG_NODE = "COOP"

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """CoOp's model: a shared (or class-specific) context in front of the class name."""
        return CoOpCLIP(clip_model, classnames, self.opts)
