"""MMRL++ (Guo & Gu, IJCV 2026); docs/methods/mmrlpp.md.

MMRL (:mod:`trainers.mmrl`) with a lighter learner: shared residual aligners (one shared weight
plus a rank-``RES_LORA_DIM`` residual and a bias per layer), ``P_r = P_v + A B`` (rank
``PROJ_LORA_DIM``, starting at CLIP's projection), and the representation positions of every
layer after the first beta-mixed with the previous block's output (``BETA``, also at test time).
Loss, logits and task-aware inference are MMRL's.
"""
from __future__ import annotations

from disakit.bundle import bundled_trainer
from disakit.clipkit.representation import RepresentationLearnerPP, RepresentationSpec
from disakit.trainers.mmrl import MMRL


@bundled_trainer
class MMRLpp(MMRL):
    """MMRL with shared residual aligners, a LoRA rep. projection and beta-mixing."""

    CFG_NODE = "MMRLPP"
    LEARNER = RepresentationLearnerPP

    def rep_spec(self) -> RepresentationSpec:
        o = self.opts
        return RepresentationSpec(int(o.N_REP_TOKENS), int(o.REP_DIM), self._rep_layers(),
                                  beta=float(o.BETA), res_lora_dim=int(o.RES_LORA_DIM),
                                  proj_lora_dim=int(o.PROJ_LORA_DIM))
