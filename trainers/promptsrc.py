"""PromptSRC: IVLP regularised towards the frozen CLIP, with Gaussian prompt aggregation (§8).

The frozen teachers come from the SAME CLIP with prompts off: the image features per batch
(``frozen_image_features``) and the IMAGENET60 raw-mean text bank, computed once per class set.
"""
from __future__ import annotations

from torch import Tensor, nn

from clipkit.banks import FrozenTextBank
from clipkit.losses import cross_entropy, self_consistency_terms, total
from clipkit.model import PromptedCLIP
from clipkit.templates import IMAGENET60
from dassl_api import TRAINER_REGISTRY
from trainers.gpa import GPAMixin
from trainers.ivlp import IVLP


@TRAINER_REGISTRY.register()
class PromptSRC(GPAMixin, IVLP):
    """L = L_CE + L_SCL_text + L_SCL_image + L_SCL_logits, then GPA over the epochs."""

    CFG_NODE = "PROMPTSRC"

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """IVLP's model, plus the frozen text teacher (IMAGENET60 templates, raw mean)."""
        self.text_teacher = FrozenTextBank(IMAGENET60, "raw_mean")
        return super().build_custom_clip(clip_model, classnames)

    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Prompted logits vs. labels, plus the three self-consistency terms (methods.md §8)."""
        model, opts = self.model, self.opts
        text, image = model.text_features(), model.image_features(images)
        logits = model.logits(image, text)
        frozen_text = self.text_teacher.features(model.text, model.prompt_learner.classnames)
        frozen_image = model.frozen_image_features(images)
        terms = {"loss_ce": cross_entropy(logits, labels), **self_consistency_terms(
            text, frozen_text, image, frozen_image, logits,
            model.logits(frozen_image, frozen_text), opts.TEXT_LOSS_WEIGHT, opts.IMAGE_LOSS_WEIGHT)}
        loss = total(terms)
        return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
