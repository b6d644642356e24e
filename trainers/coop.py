"""CoOp (Zhou et al., IJCV 2022): learned text context, frozen image tower; docs/methods/coop.md."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import ClassTokenPosition, PromptContext, init_context
from disakit.trainers.base import PromptTrainer
from disakit.trainers.settings import PromptSettings


@dataclass(frozen=True)
class CoOpSettings(PromptSettings):
    """``TRAINER.COOP`` (docs/methods/coop.md)."""

    NODE = "COOP"

    n_ctx: int
    csc: bool
    ctx_init: str
    class_token_position: ClassTokenPosition


class CoOpCLIP(PromptedCLIP):
    """CLIP whose class prompts are ``[SOT][ctx][class][.][EOT]`` with a learned ``ctx``."""

    prompt_learner: PromptContext

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int,
                 ctx_init: str = "", csc: bool = False,
                 class_token_position: ClassTokenPosition = "end") -> None:
        """``n_ctx`` context tokens (a non-empty ``ctx_init`` phrase sets them and their
        number), one per class with ``csc``; the class name at ``class_token_position``."""
        super().__init__(clip_model)
        init = init_context(self.text.embed, self.text.width, n_ctx, ctx_init,
                            policy="words", n_cls=len(classnames) if csc else None)
        print(f'Initial context: "{init.prefix_text}"')
        print(f"Number of context words (tokens): {init.n_ctx}")
        self.prompt_learner = PromptContext(init, class_token_position)
        self.set_classnames(classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        self.prompt_learner.set_classnames(classnames, self.text.embed)

    def text_features(self) -> Tensor:
        embeds, eot = self.prompt_learner()
        return F.normalize(self.text.encode_embeddings(embeds, eot), dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        return F.normalize(self.vision(images).features, dim=-1)


@bundled_trainer
class CoOp(PromptTrainer):
    """Context Optimization: cross-entropy on prompted-text / frozen-image logits."""

    SETTINGS = CoOpSettings
    settings: CoOpSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """CoOp's model: a shared (or class-specific) context in front of the class name."""
        s = self.settings
        return CoOpCLIP(clip_model, classnames, s.n_ctx, s.ctx_init, s.csc,
                        s.class_token_position)
