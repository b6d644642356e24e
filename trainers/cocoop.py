"""CoCoOp: CoOp's context shifted per image by a small meta-network (docs/methods/cocoop.md).

Every image gets its own class prompts, so the text tower runs on B·C sequences per batch, at
training and at test time (class features cannot be cached). They are encoded in one batched
pass (chunked over images to bound memory), truncated to the longest class prompt (exact).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import ContextInit, PromptContext, init_context
from disakit.trainers.base import PromptTrainer
from disakit.trainers.settings import PromptSettings


@dataclass(frozen=True)
class CoCoOpSettings(PromptSettings):
    """``TRAINER.COCOOP`` (docs/methods/cocoop.md)."""

    NODE = "COCOOP"

    n_ctx: int
    ctx_init: str


class ConditionalContext(PromptContext):
    """``ctx`` + ``meta_net`` (linear1 → relu → linear2, hidden = embed_dim // 16)."""

    def __init__(self, init: ContextInit, embed_dim: int) -> None:
        super().__init__(init, "end")
        hidden = embed_dim // 16
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(embed_dim, hidden)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, init.vectors.shape[-1])),
        ]))

    def forward(self, image_feats: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """Per-image prompts (B, C, L*, D) and the class EOT indices (C,)."""
        return super().forward(shift=self.meta_net(image_feats.float()))


class CoCoOpCLIP(PromptedCLIP):
    """Frozen image encoder; text prompts conditioned on each image's feature."""

    # Upper bound on text sequences per pass (images are chunked so that chunk·C stays below).
    MAX_TEXT_SEQUENCES: ClassVar[int] = 8192

    prompt_learner: ConditionalContext

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_ctx: int,
                 ctx_init: str = "") -> None:
        """``n_ctx`` context tokens (a non-empty ``ctx_init`` phrase sets them and their
        number), shifted per image by the meta-net."""
        super().__init__(clip_model)
        init = init_context(self.text.embed, self.text.width, n_ctx, ctx_init, policy="words")
        print(f'Initial context: "{init.prefix_text}"')
        print(f"Number of context words (tokens): {init.n_ctx}")
        self.prompt_learner = ConditionalContext(init, self.text.text_projection.shape[1])
        self.set_classnames(classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        self.prompt_learner.set_classnames(classnames, self.text.embed)

    def image_features(self, images: Tensor) -> Tensor:
        return F.normalize(self.vision(images).features, dim=-1)

    def text_features(self) -> Tensor:
        raise TypeError("CoCoOp's class features depend on the image: use "
                        "conditional_text_features(image_features)")

    def conditional_text_features(self, image_feats: Tensor) -> Tensor:
        """Normalised class features per image (B, C, E), one (B·C)-sequence pass per chunk."""
        n_cls = self.prompt_learner.num_classes
        chunk = max(1, self.MAX_TEXT_SEQUENCES // n_cls)
        return torch.cat([self._encode_chunk(f) for f in image_feats.split(chunk)])

    def _encode_chunk(self, image_feats: Tensor) -> Tensor:
        embeds, eot = self.prompt_learner(image_feats)
        batch, n_cls = embeds.shape[:2]
        feats = self.text.encode_embeddings(embeds.flatten(0, 1), eot.repeat(batch))
        return F.normalize(feats, dim=-1).view(batch, n_cls, -1)

    def forward(self, images: Tensor, text_feats: Optional[Tensor] = None) -> Tensor:
        """Logits ``s · f̂_b · ĝ_bᵀ`` per image (``text_feats`` is not accepted: no caching)."""
        if text_feats is not None:
            raise ValueError("CoCoOp cannot use cached class features (they depend on the image)")
        image = self.image_features(images)
        text = self.conditional_text_features(image)
        return self.scale * torch.einsum("be,bce->bc", image.float(), text.float())


@bundled_trainer
class CoCoOp(PromptTrainer):
    """Conditional Context Optimization: cross-entropy on image-conditioned prompts."""

    SETTINGS = CoCoOpSettings
    SUMMARY_ACC = False

    settings: CoCoOpSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """CoCoOp's model: a generic context plus the meta-net, class at the end."""
        return CoCoOpCLIP(clip_model, classnames, self.settings.n_ctx, self.settings.ctx_init)

    @torch.no_grad()
    def model_inference(self, images: Tensor) -> Tensor:
        """Logits with per-image prompts: class features are recomputed for every batch."""
        with self.precision.autocast():
            return self.model(images)
