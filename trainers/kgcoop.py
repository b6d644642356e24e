"""KgCoOp: CoOp kept close to the hand-crafted prompt's frozen features (docs/methods/kgcoop.md)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.banks import FrozenTextBank
from disakit.clipkit.losses import cross_entropy, knowledge_guidance
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.templates import DEFAULT_TEMPLATE, KGCOOP_TEMPLATES
from disakit.dassl_api import compute_accuracy
from disakit.trainers.base import PromptTrainer
from disakit.trainers.coop import CoOpCLIP
from disakit.trainers.settings import PromptSettings


@dataclass(frozen=True)
class KgCoOpSettings(PromptSettings):
    """``TRAINER.KGCOOP`` (docs/methods/kgcoop.md); upstream's ``TRAINER.COOP.*`` spellings are
    translated to it (trainers/upstream.py)."""

    NODE = "KGCOOP"

    n_ctx: int
    ctx_init: str
    w: float


@bundled_trainer
class KgCoOp(PromptTrainer):
    """L = CE + W · (1 − mean_c cos(ĝ_c, t̂_c)), t̂ from the dataset's KgCoOp template."""

    SETTINGS = KgCoOpSettings

    model: CoOpCLIP
    settings: KgCoOpSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """CoOp's model (shared context, class at the end) and the frozen template features."""
        template = KGCOOP_TEMPLATES.get(self.cfg.DATASET.NAME, DEFAULT_TEMPLATE)
        self.knowledge = FrozenTextBank([template])
        return CoOpCLIP(clip_model, classnames, self.settings.n_ctx, self.settings.ctx_init)

    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy plus the knowledge-guided term weighted by ``W``."""
        model = self.model
        text = model.text_features()
        logits = model.logits(model.image_features(images), text)
        frozen = self.knowledge.features(model.text, model.prompt_learner.classnames)
        loss = cross_entropy(logits, labels) + self.settings.w * knowledge_guidance(text, frozen)
        return loss, {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}
