"""PromptSRC: IVLP regularised towards the frozen CLIP, with Gaussian prompt aggregation.

The frozen teachers come from the SAME CLIP with prompts off: the image features per batch
and the IMAGENET60 raw-mean text bank, computed once per class set. :meth:`PromptSRC.batch_features`
(one prompted and one frozen pass) and :meth:`PromptSRC.self_consistency` (the L_SCL terms) are
the pieces DiSa (:mod:`trainers.disa`) builds its L_SR on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.banks import FrozenTextBank
from disakit.clipkit.encoders import VisionOutput, VisionTower
from disakit.clipkit.losses import cross_entropy, self_consistency_terms, total
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.templates import IMAGENET60
from disakit.trainers.gpa import GPAMixin, GPASettings
from disakit.trainers.ivlp import IVLP, IVLPSettings


@dataclass(frozen=True)
class PromptSRCSettings(IVLPSettings, GPASettings):
    """``TRAINER.PROMPTSRC`` (docs/methods/promptsrc.md): IVLP's prompt keys, the L_SCL weights
    and GPA's."""

    NODE = "PROMPTSRC"

    text_loss_weight: float
    image_loss_weight: float


@dataclass
class BatchFeatures:
    """One batch's normalised features: prompted (``text`` ĝ_p, ``image`` f̂_p) and frozen
    (``frozen_text`` Ĝ_o, ``frozen_image`` f̂_o, fp32; None when not computed), plus the final
    token states of the prompted and frozen image passes when asked for (DiSa's saliency)."""

    text: Tensor
    image: Tensor
    frozen_text: Optional[Tensor] = None
    frozen_image: Optional[Tensor] = None
    tokens: Optional[Tensor] = None
    frozen_tokens: Optional[Tensor] = None

    def frozen(self) -> tuple[Tensor, Tensor]:
        """``(frozen_text, frozen_image)``; an error if they were not computed."""
        if self.frozen_text is None or self.frozen_image is None:
            raise RuntimeError("the frozen teachers were not computed for this batch: call "
                               "batch_features(..., frozen=True)")
        return self.frozen_text, self.frozen_image


@torch.no_grad()
def frozen_image_pass(vision: VisionTower, images: Tensor,
                      return_tokens: bool = False) -> VisionOutput:
    """Zero-shot CLIP image features (prompts off), normalised in fp32, without gradient."""
    out = vision(images, return_tokens=return_tokens)
    return VisionOutput(F.normalize(out.features.float(), dim=-1), out.tokens)


@bundled_trainer
class PromptSRC(GPAMixin, IVLP):
    """L = L_CE + L_SCL_text + L_SCL_image + L_SCL_logits, then GPA over the epochs."""

    SETTINGS: ClassVar[type[PromptSRCSettings]] = PromptSRCSettings  # DiSa: DiSaSettings

    settings: PromptSRCSettings
    text_teacher: FrozenTextBank

    def frozen_templates(self) -> Sequence[str]:
        """Templates of the frozen text teacher (PromptSRC: IMAGENET60)."""
        return IMAGENET60

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """IVLP's model, plus the frozen text teacher (raw mean over the templates)."""
        self.text_teacher = FrozenTextBank(self.frozen_templates(), "raw_mean")
        return super().build_custom_clip(clip_model, classnames)

    def batch_features(self, images: Tensor, tokens: bool = False, frozen_tokens: bool = False,
                       frozen: bool = True) -> BatchFeatures:
        """Prompted text and image features and (``frozen``) the frozen teachers of a batch:
        one prompted text pass, one prompted and one frozen image pass; the text bank is cached."""
        model = self.model
        prompted = model.encode_image(images, return_tokens=tokens)
        feats = BatchFeatures(model.text_features(), F.normalize(prompted.features, dim=-1),
                              tokens=prompted.tokens)
        if frozen:
            teacher = frozen_image_pass(model.vision, images, frozen_tokens)
            feats.frozen_image, feats.frozen_tokens = teacher.features, teacher.tokens
            feats.frozen_text = self.text_teacher.features(model.text,
                                                           model.prompt_learner.classnames)
        return feats

    def self_consistency(self, feats: BatchFeatures, logits: Tensor, text_weight: float,
                         image_weight: float, logits_weight: float = 1.0) -> dict[str, Tensor]:
        """PromptSRC's weighted L_SCL terms (``loss_scl_text``/``_image``/``_logits``)."""
        frozen_text, frozen_image = feats.frozen()
        frozen_logits = self.model.logits(frozen_image, frozen_text)
        return self_consistency_terms(feats.text, frozen_text, feats.image, frozen_image, logits,
                                      frozen_logits, text_weight, image_weight, logits_weight)

    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """CE plus the three self-consistency terms (docs/methods/promptsrc.md)."""
        feats = self.batch_features(images)
        logits = self.model.logits(feats.image, feats.text)
        terms = {"loss_ce": cross_entropy(logits, labels), **self.self_consistency(
            feats, logits, self.settings.text_loss_weight, self.settings.image_loss_weight)}
        loss = total(terms)
        return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
