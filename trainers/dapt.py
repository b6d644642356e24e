"""DAPT: Distribution-Aware Prompt Tuning (Cho et al., ICCV 2023); docs/methods/dapt.md.

A CoOp text context and VPT-style visual prompts (after ``ln_pre``, between CLS and the
patches), trained with cross-entropy plus two dispersion terms: ``L_inter`` spreads the class
text embeddings apart, ``L_intra`` pulls each prompted image feature towards its class
prototype, the mean frozen-CLIP feature of that class's training images
(:mod:`trainers.prototypes`, computed once when training starts and cached in the dataset's
``split_fewshot/`` folder).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.losses import cross_entropy, inter_dispersion, intra_dispersion, total
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import ContextInit, PromptContext, init_context
from disakit.dassl_api import compute_accuracy
from disakit.trainers.base import PromptTrainer
from disakit.trainers.prototypes import ProtoTransform, trainer_prototypes
from disakit.trainers.settings import PromptSettings


@dataclass(frozen=True)
class DAPTSettings(PromptSettings):
    """``TRAINER.DAPT`` (docs/methods/dapt.md)."""

    NODE = "DAPT"

    txt_num_tokens: int
    vis_num_tokens: int
    vis_dropout: float
    vis_beta: float
    txt_beta: float
    txt_rbf_t: float
    prototype_gen: bool
    proto_transform: ProtoTransform
    proto_auto: bool


def visual_prompt_init(n_tokens: int, width: int, patch_size: int) -> Tensor:
    """VPT's bound: ``U(−v, v)`` with ``v = sqrt(6 / (3·p·p + width))`` (0.0625 at ViT-B/16)."""
    bound = math.sqrt(6.0 / (3 * patch_size * patch_size + width))
    return torch.empty(n_tokens, width).uniform_(-bound, bound)


class DAPTPromptLearner(PromptContext):
    """CoOp's shared text context ``ctx`` plus ``vis_ctx`` (n_v, vision width) with dropout.

    Checkpoints name them as upstream DAPT does, ``txt_ctx`` and ``vis_ctx`` (the trainer's
    ``CHECKPOINT_KEYS``), so upstream checkpoints load too (their token buffers are dropped by
    ``load_model``).
    """

    def __init__(self, text_init: ContextInit, vis_ctx: Tensor, vis_dropout: float = 0.0) -> None:
        super().__init__(text_init, "end")
        self.vis_ctx = nn.Parameter(vis_ctx)
        self.vis_dropout = nn.Dropout(vis_dropout)

    def visual_prompts(self) -> Tensor:
        """The visual prompts as inserted (dropout ``VIS_DROPOUT`` in training mode)."""
        return self.vis_dropout(self.vis_ctx)


class DAPTCLIP(PromptedCLIP):
    """CLIP with a shallow text context and shallow visual prompts after ``ln_pre``."""

    prompt_learner: DAPTPromptLearner

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], n_txt: int, n_vis: int,
                 vis_dropout: float = 0.0) -> None:
        super().__init__(clip_model)
        if not self.vision.is_vit:
            raise ValueError("DAPT's visual prompts need a ViT backbone (e.g. ViT-B/16)")
        text_init = init_context(self.text.embed, self.text.width, n_txt, "", policy="words")
        vis_ctx = visual_prompt_init(n_vis, self.vision.width, self.vision.patch_size)
        self.prompt_learner = DAPTPromptLearner(text_init, vis_ctx, vis_dropout)
        self.set_classnames(classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        self.prompt_learner.set_classnames(classnames, self.text.embed)

    def text_features(self) -> Tensor:
        embeds, eot = self.prompt_learner()
        return F.normalize(self.text.encode_embeddings(embeds, eot), dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        prompts = self.prompt_learner.visual_prompts()
        return F.normalize(self.vision(images, prompts, position="after_cls").features, dim=-1)


@bundled_trainer
class DAPT(PromptTrainer):
    """``L = CE + VIS_BETA · L_intra + TXT_BETA · L_inter`` (docs/methods/dapt.md)."""

    SETTINGS = DAPTSettings
    CHECKPOINT_KEYS = {"ctx": "txt_ctx"}  # upstream DAPT's name of the text context
    prototypes: Optional[Tensor] = None  # (C, E) fp32; set when training starts

    model: DAPTCLIP
    settings: DAPTSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """DAPT's model: 16 random text context tokens, 16 visual prompts after CLS."""
        s = self.settings
        print(f"Number of text prompt tokens: {s.txt_num_tokens}; visual: {s.vis_num_tokens}")
        return DAPTCLIP(clip_model, classnames, s.txt_num_tokens, s.vis_num_tokens,
                        s.vis_dropout)

    # -- prototypes ----------------------------------------------------------------------------
    def load_prototypes(self, regenerate: bool = False) -> Tensor:
        """The current classes' prototypes (unnormalised mean, ``PROTO_TRANSFORM`` view), from
        the cache or computed now (``PROTO_AUTO``)."""
        if not hasattr(self, "dm"):
            raise RuntimeError("DAPT needs class prototypes: set trainer.prototypes (C, E) when "
                               "driving the trainer without a dataset (build_standalone)")
        self.prototypes = trainer_prototypes(self, self.settings.proto_transform, normalize=False,
                                             tag="dapt", auto=self.settings.proto_auto,
                                             regenerate=regenerate)
        return self.prototypes

    def before_train(self) -> None:
        super().before_train()
        self.load_prototypes()

    def train(self, *args: Any, **kwargs: Any) -> None:
        """Train; with ``PROTOTYPE_GEN`` only (re)generate the prototype cache (upstream flow)."""
        if not self.settings.prototype_gen:
            super().train(*args, **kwargs)
            return
        self.load_prototypes(regenerate=True)
        print("Prototype generation finished (TRAINER.DAPT.PROTOTYPE_GEN True); nothing trained")

    # -- loss ----------------------------------------------------------------------------------
    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy plus the intra (visual) and inter (text) dispersion terms."""
        prototypes = self.prototypes if self.prototypes is not None else self.load_prototypes()
        model, s = self.model, self.settings
        text = model.text_features()
        image = model.image_features(images)
        logits = model.logits(image, text)
        loss = total({"ce": cross_entropy(logits, labels),
                      "intra": s.vis_beta * intra_dispersion(image, prototypes[labels]),
                      "inter": s.txt_beta * inter_dispersion(text, s.txt_rbf_t)})
        return loss, {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}
