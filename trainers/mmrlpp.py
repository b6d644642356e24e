"""MMRL++ (Guo & Gu, IJCV 2026); docs/methods/mmrlpp.md.

MMRL (:mod:`trainers.mmrl`) with a lighter learner: shared residual aligners (one shared weight
plus a rank-``RES_LORA_DIM`` residual and a bias per layer), ``P_r = P_v + A B`` (rank
``PROJ_LORA_DIM``, starting at CLIP's projection), and the representation positions of every
layer after the first beta-mixed with the previous block's output (``BETA``, also at test time).
Loss, logits and task-aware inference are MMRL's.
"""
from __future__ import annotations

from dataclasses import dataclass

from disakit.bundle import bundled_trainer
from disakit.clipkit.representation import RepresentationLearnerPP, RepresentationSpec
from disakit.trainers.mmrl import MMRL, MMRLSettings


@dataclass(frozen=True)
class MMRLppSettings(MMRLSettings):
    """``TRAINER.MMRLPP`` (docs/methods/mmrlpp.md): MMRL's keys, ``BETA`` and the LoRA ranks."""

    NODE = "MMRLPP"

    beta: float
    proj_lora_dim: int
    res_lora_dim: int

    def rep_spec(self) -> RepresentationSpec:
        return RepresentationSpec(self.n_rep_tokens, self.rep_dim, self.rep_layers,
                                  beta=self.beta, res_lora_dim=self.res_lora_dim,
                                  proj_lora_dim=self.proj_lora_dim)


@bundled_trainer
class MMRLpp(MMRL):
    """MMRL with shared residual aligners, a LoRA rep. projection and beta-mixing."""

    SETTINGS = MMRLppSettings
    LEARNER = RepresentationLearnerPP

    settings: MMRLppSettings
