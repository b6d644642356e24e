"""DiSa: Directional Saliency-Aware prompt learning (Alipour Talemi et al., KDD 2025).

No official code is public: docs/methods/disa.md documents the reconstruction on PromptSRC's code
base, and every choice in it is a ``TRAINER.DISA.*`` key (:class:`DiSaSettings`). On IVLP deep
prompts (4+4 tokens, depth 9) one training step is

1. prompted text ĝ_p, prompted image f̂_p with its final patch tokens, frozen image f̂_o and the
   frozen text bank Ĝ_o (:meth:`PromptSRC.batch_features`);
2. ``L_CE`` on the unmasked image and PromptSRC's self-regularisation ``L_SR`` (``SR_MODE``);
3. saliency-aware masking (:mod:`clipkit.saliency`, no gradient): the ``MASK_RATIO`` least
   text-relevant patches are greyed and the masked image goes through the prompted encoder again;
4. ``L_CIR``: KL between prompted-masked-image vs. frozen-text and frozen-image vs.
   prompted-text scores;
5. ``L_DiR``: the prompted image features point along their class prototypes (frozen-CLIP class
   means of the few-shot images, computed once when training starts);

``L = L_CE + L_SR + CIR_WEIGHT·L_CIR + DIR_WEIGHT·L_DiR``, then Gaussian prompt aggregation.
A zero weight (or ``SR_MODE none``) switches a term off and skips its passes, so the ablation
ladder IVLP → +L_SR → +L_CIR → +mask → +L_DiR is a config change. Inference is IVLP's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from torch import Tensor

from disakit.bundle import bundled_trainer
from disakit.clipkit import saliency
from disakit.clipkit.losses import (
    DirForm,
    KLDirection,
    cross_entropy,
    cross_interactive_kl,
    directional_regularization,
    kl_numel,
    total,
)
from disakit.clipkit.saliency import MaskFill
from disakit.clipkit.templates import TEMPLATE_SETS, resolve_templates
from disakit.dassl_api import compute_accuracy
from disakit.trainers.promptsrc import BatchFeatures, PromptSRC, PromptSRCSettings
from disakit.trainers.prototypes import ProtoTransform, trainer_prototypes

_KEY = "TRAINER.DISA."
SRMode = Literal["scl", "logits", "none"]
CIRReduction = Literal["numel", "batchmean"]
MaskSaliency = Literal["prompted", "frozen", "random"]
MaskText = Literal["gt", "pred"]

_OFF = {"sr": [f"{_KEY}SR_MODE", "none"], "cir": [f"{_KEY}CIR_WEIGHT", "0.0"],
        "dir": [f"{_KEY}DIR_WEIGHT", "0.0"]}
# The ablation ladder (docs/methods/disa.md) as KEY VALUE options on any DiSa config; each
# rung adds one element ("ivlp" is IVLP trained with cross-entropy only, "+sr" is PromptSRC and
# "+dir" is DiSa; "+dir_l2" is the proximity baseline for the directional term).
ABLATION_LADDER: dict[str, list[str]] = {
    "ivlp": [*_OFF["sr"], *_OFF["cir"], *_OFF["dir"], f"{_KEY}GPA", "False"],
    "+sr": [*_OFF["cir"], *_OFF["dir"]],
    "+cir_nomask": [f"{_KEY}CIR_USE_MASK", "False", *_OFF["dir"]],
    "+random_mask": [f"{_KEY}MASK_SALIENCY", "random", *_OFF["dir"]],
    "+saliency_mask": [*_OFF["dir"]],
    "+dir": [],
    "+dir_l2": [f"{_KEY}DIR_FORM", "l2"],
}


@dataclass(frozen=True)
class DiSaSettings(PromptSRCSettings):
    """``TRAINER.DISA``: PromptSRC's keys (prompts, L_SCL weights, GPA), the frozen text bank,
    the GPA switch and the loss and masking keys; choices are the ``Literal`` annotations."""

    NODE = "DISA"

    frozen_templates: str
    gpa: bool
    sr_mode: SRMode
    sr_logits_weight: float
    cir_weight: float
    cir_kl: KLDirection
    cir_reduction: CIRReduction
    cir_use_mask: bool
    mask_ratio: float
    mask_fill: MaskFill
    mask_saliency: MaskSaliency
    mask_text: MaskText
    mask_prob: float
    dir_weight: float
    dir_form: DirForm
    dir_tau: float
    dir_proto_normalize: bool
    dir_proto_transform: ProtoTransform

    def validate(self) -> None:
        """Ranges, ``DIR_TAU`` for ``proto_ce`` and the template set's name."""
        super().validate()
        for name in ("MASK_RATIO", "MASK_PROB"):
            value = getattr(self, name.lower())
            if not 0.0 <= value <= 1.0:
                raise self.error(name, f"must be between 0.0 and 1.0, got {value}",
                                 self.fix(name, "a fraction in [0.0, 1.0]"))
        if self.dir_form == "proto_ce" and self.dir_tau <= 0:
            raise self.error("DIR_TAU", f"must be > 0 for DIR_FORM proto_ce, got {self.dir_tau}",
                             self.fix("DIR_TAU", "a positive temperature"))
        sets = sorted(TEMPLATE_SETS) + ["custom"]
        if self.frozen_templates.lower() not in sets:
            raise self.error("FROZEN_TEMPLATES",
                             f"must be one of {sets}, got {self.frozen_templates!r}",
                             self.fix("FROZEN_TEMPLATES", "one of them"))

    @property
    def gpa_enabled(self) -> bool:
        """``GPA``: DiSa's switch (off on the ablation ladder's ``ivlp`` rung)."""
        return self.gpa

    @property
    def needs_frozen(self) -> bool:
        """Whether any active term reads the frozen image features or text bank."""
        return (self.sr_mode != "none" or self.cir_weight != 0
                or (self.dir_weight != 0 and self.dir_form == "displacement"))


@dataclass
class MaskedBatch:
    """What saliency-aware masking did to a batch: the images fed to the masked pass, the
    masked patch indices (B, k), which samples were masked (``MASK_PROB``) and the scores."""

    images: Tensor
    patch_idx: Tensor
    chosen: Tensor
    scores: Optional[Tensor]


@bundled_trainer
class DiSa(PromptSRC):
    """``L = L_CE + L_SR + CIR_WEIGHT·L_CIR + DIR_WEIGHT·L_DiR`` on IVLP prompts, with GPA."""

    SETTINGS = DiSaSettings
    MODEL_NAME = "prompt_learner"
    prototypes: Optional[Tensor] = None  # (C, E) fp32, set when training starts; never saved

    settings: DiSaSettings

    def frozen_templates(self) -> tuple[str, ...]:
        """``FROZEN_TEMPLATES``: imagenet60 (default), imagenet80, select7, custom or single."""
        return resolve_templates(self.settings.frozen_templates, self.cfg.DATASET.NAME)

    # -- prototypes (L_DiR) --------------------------------------------------------------------
    def load_prototypes(self) -> Tensor:
        """The training classes' directions m_c from the frozen encoder (cached on disk)."""
        if not hasattr(self, "dm"):
            raise RuntimeError("DiSa's L_DiR needs class prototypes: set trainer.prototypes (C, E) "
                               "when driving the trainer without a dataset (build_standalone), or "
                               f"set {_KEY}DIR_WEIGHT 0.0")
        s = self.settings
        self.prototypes = trainer_prototypes(self, s.dir_proto_transform, s.dir_proto_normalize,
                                             tag="disa")
        return self.prototypes

    def before_train(self) -> None:
        super().before_train()
        if self.settings.dir_weight != 0:
            self.load_prototypes()

    # -- one training step -----------------------------------------------------------------------
    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The four loss terms of one batch (docs/methods/disa.md); ``loss_summary`` has each."""
        s = self.settings
        feats = self.batch_features(images, tokens=s.mask_saliency == "prompted",
                                    frozen_tokens=s.mask_saliency == "frozen",
                                    frozen=s.needs_frozen)
        logits = self.model.logits(feats.image, feats.text)
        zero = logits.new_zeros(())
        terms = {
            "loss_ce": cross_entropy(logits, labels),
            "loss_sr": zero if s.sr_mode == "none" else self.self_regularization(feats, logits),
            "loss_cir": _weighted(s.cir_weight, zero, lambda: self.cross_interactive(
                images, labels, feats)),
            "loss_dir": _weighted(s.dir_weight, zero, lambda: self.directional(feats, labels)),
        }
        loss = total(terms)
        summary = {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
        return loss, {**summary, "acc": compute_accuracy(logits, labels)[0].item()}

    def self_regularization(self, feats: BatchFeatures, logits: Tensor) -> Tensor:
        """L_SR: PromptSRC's L_SCL (``scl``) or only its logit-distillation KL (``logits``)."""
        s = self.settings
        if s.sr_mode == "logits":
            frozen_text, frozen_image = feats.frozen()
            frozen_logits = self.model.logits(frozen_image, frozen_text)
            return s.sr_logits_weight * kl_numel(frozen_logits, logits)
        return total(self.self_consistency(feats, logits, s.text_loss_weight,
                                           s.image_loss_weight, s.sr_logits_weight))

    def cross_interactive(self, images: Tensor, labels: Tensor, feats: BatchFeatures) -> Tensor:
        """L_CIR = KL(q(f̂_p^m, Ĝ_o) ‖ q(f̂_o, ĝ_p)) (``CIR_KL`` direction, ``CIR_REDUCTION``)."""
        s, model = self.settings, self.model
        image = self.masked_image_features(images, labels, feats) if s.cir_use_mask else feats.image
        frozen_text, frozen_image = feats.frozen()
        return cross_interactive_kl(model.logits(image, frozen_text),
                                    model.logits(frozen_image, feats.text),
                                    s.cir_kl, s.cir_reduction)

    def directional(self, feats: BatchFeatures, labels: Tensor) -> Tensor:
        """L_DiR between f̂_p (unmasked) and the label's prototype (``DIR_FORM``)."""
        prototypes = self.prototypes if self.prototypes is not None else self.load_prototypes()
        s = self.settings
        return directional_regularization(s.dir_form, feats.image, prototypes, labels,
                                          feats.frozen_image, s.dir_tau)

    # -- saliency-aware masking ----------------------------------------------------------------
    def masked_image_features(self, images: Tensor, labels: Tensor,
                              feats: BatchFeatures) -> Tensor:
        """f̂_p^m: the same prompted encoder (with gradient, no text pass) on the masked images;
        f̂_p for samples left unmasked (``MASK_PROB`` < 1)."""
        batch = self.mask_batch(images, labels, feats)
        if bool(batch.chosen.all()):
            return self.model.image_features(batch.images)
        image = feats.image.clone()
        if bool(batch.chosen.any()):
            image[batch.chosen] = self.model.image_features(batch.images[batch.chosen])
        return image

    @torch.no_grad()
    def mask_batch(self, images: Tensor, labels: Tensor, feats: BatchFeatures) -> MaskedBatch:
        """Grey out the k = round(MASK_RATIO·N) least salient patches of each chosen image."""
        s, vision = self.settings, self.model.vision
        num_patches = vision.grid_size ** 2
        k = saliency.num_masked_patches(s.mask_ratio, num_patches)
        scores = self.saliency_scores(labels, feats)
        idx = (saliency.random_patches(len(images), num_patches, k, images.device)
               if scores is None else saliency.least_salient_patches(scores, k))
        chosen = torch.ones(len(images), dtype=torch.bool, device=images.device)
        if s.mask_prob < 1.0:
            chosen = torch.rand(len(images), device=images.device) < s.mask_prob
        masked = saliency.mask_patches(images, idx, vision.patch_size, self.mask_fill_value())
        masked = torch.where(chosen[:, None, None, None], masked, images)
        return MaskedBatch(masked, idx, chosen, scores)

    def saliency_scores(self, labels: Tensor, feats: BatchFeatures) -> Optional[Tensor]:
        """Patch scores against the frozen text of the label (``gt``) or of the frozen model's
        prediction (``pred``), from the prompted or frozen final tokens; None for ``random``."""
        s = self.settings
        if s.mask_saliency == "random":
            return None
        tokens = feats.tokens if s.mask_saliency == "prompted" else feats.frozen_tokens
        if tokens is None:
            raise RuntimeError(f"MASK_SALIENCY {s.mask_saliency} needs that pass's final tokens: "
                               "batch_features(tokens=...) / (frozen_tokens=...)")
        frozen_text, frozen_image = feats.frozen()
        targets = labels
        if s.mask_text == "pred":
            targets = (frozen_image @ frozen_text.t()).argmax(dim=-1)
        return saliency.patch_saliency(tokens, self.model.vision, frozen_text, targets)

    def mask_fill_value(self) -> Tensor:
        """``MASK_FILL`` in the input's space (normalised with ``INPUT.PIXEL_MEAN/STD``)."""
        inp = self.cfg.INPUT
        return saliency.mask_fill_value(self.settings.mask_fill, inp.PIXEL_MEAN, inp.PIXEL_STD,
                                        normalized="normalize" in inp.TRANSFORMS)


def _weighted(weight: float, zero: Tensor, term: Callable[[], Tensor]) -> Tensor:
    """``weight · term()``, without computing the term (or its passes) when the weight is 0."""
    return zero if weight == 0 else weight * term()
