"""Loss terms of the prompt-learning methods, as plain functions on tensors (docs/methods/).

Why one module: the same few terms (cross-entropy, a consistency L1, a KL between two
softmaxes, a cosine "stay close to the frozen features" penalty) recur across KgCoOp,
PromptSRC and DiSa, each with a specific normalisation that decides the published numbers. Each
is written once here, computed in fp32 whatever the activation dtype (docs/methods/README.md), and
tested against its formula on hand-built tensors.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

KLReduction = Literal["numel", "batchmean", "sum"]


def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy on fp32 logits."""
    return F.cross_entropy(logits.float(), labels)


def knowledge_guidance(text: Tensor, frozen_text: Tensor, eps: float = 1e-7) -> Tensor:
    """KgCoOp's penalty ``1 - (1/C) Σ_c cos(ĝ_c, t̂_c)`` between prompted and frozen class features.

    On unit vectors this is half the squared distance the paper writes; the code form (with
    ``W = 8``) is what produced the published numbers.
    """
    cos = F.cosine_similarity(text.float(), frozen_text.float(), dim=-1, eps=eps)
    return 1.0 - cos.mean()


def l1_consistency(prompted: Tensor, frozen: Tensor) -> Tensor:
    """PromptSRC's feature consistency: mean absolute difference over all elements."""
    return F.l1_loss(prompted.float(), frozen.float(), reduction="mean")


def kl_logits(p_logits: Tensor, q_logits: Tensor, reduction: KLReduction = "numel") -> Tensor:
    """``KL(softmax(p) ‖ softmax(q))`` summed over classes and reduced over the batch.

    ``numel`` divides the total by the number of logits (B·C), PromptSRC's normalisation;
    ``batchmean`` by the batch size B; ``sum`` not at all. Gradients flow into both arguments,
    so detach (or compute under ``no_grad``) a side that is a frozen teacher.
    """
    log_p = F.log_softmax(p_logits.float(), dim=-1)
    log_q = F.log_softmax(q_logits.float(), dim=-1)
    total = (log_p.exp() * (log_p - log_q)).sum()
    if reduction == "numel":
        return total / p_logits.numel()
    if reduction == "batchmean":
        return total / p_logits.shape[0]
    if reduction == "sum":
        return total
    raise ValueError(f"KL reduction must be 'numel', 'batchmean' or 'sum', got {reduction!r}")


def kl_numel(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """``KL(softmax(p) ‖ softmax(q))`` summed and divided by the number of logits (PromptSRC)."""
    return kl_logits(p_logits, q_logits, "numel")


def self_consistency_terms(
    text: Tensor, frozen_text: Tensor, image: Tensor, frozen_image: Tensor,
    logits: Tensor, frozen_logits: Tensor, text_weight: float, image_weight: float,
    logits_weight: float = 1.0,
) -> dict[str, Tensor]:
    """PromptSRC's weighted L_SCL terms (docs/methods/promptsrc.md); their sum is L_SCL.

    ``text``/``image`` are the prompted normalised features, ``frozen_*`` the frozen-CLIP ones
    (the text bank normalised at use); ``frozen_logits`` are the zero-shot logits. Keys:
    ``loss_scl_text``, ``loss_scl_image``, ``loss_scl_logits``.
    """
    return {
        "loss_scl_text": text_weight * l1_consistency(text, frozen_text),
        "loss_scl_image": image_weight * l1_consistency(image, frozen_image),
        "loss_scl_logits": logits_weight * kl_numel(frozen_logits, logits),
    }


def total(terms: dict[str, Tensor]) -> Tensor:
    """Sum of named loss terms (kept separate so that ``loss_summary`` can report each)."""
    return torch.stack([t.float() for t in terms.values()]).sum()


def intra_dispersion(image: Tensor, prototypes: Tensor) -> Tensor:
    """DAPT's ``L_intra = (1/(B·E)) Σ_b ‖ẑ_b − s_{y_b}‖²`` (docs/methods/dapt.md): element-wise MSE
    between prompted image features and the prototypes of their labels (so a per-sample
    squared distance would need ``VIS_BETA / E``)."""
    return F.mse_loss(image.float(), prototypes.float())


def inter_dispersion(text: Tensor, t: float) -> Tensor:
    """DAPT's ``L_inter = (2/(C(C−1))) Σ_{i<j} exp(−t ‖ŵ_i − ŵ_j‖²)`` over class text features
    (no log). Squared distances come from the Gram matrix (no ``sqrt``, so no NaN
    gradient for equal rows); with fewer than two classes there is no pair and the term is 0.
    """
    w = text.float()
    if w.shape[0] < 2:
        return w.sum() * 0.0
    sq_norm = (w * w).sum(dim=-1)
    sq_dist = (sq_norm[:, None] + sq_norm[None, :] - 2.0 * w @ w.t()).clamp_min(0.0)
    i, j = torch.triu_indices(w.shape[0], w.shape[0], offset=1, device=w.device)
    return torch.exp(-t * sq_dist[i, j]).mean()


# -------------------------------------------------------------------- DiSa (docs/methods/disa.md)
KLDirection = Literal["forward", "reverse", "symmetric"]
DirForm = Literal["cosine", "proto_ce", "displacement", "l2"]
KL_DIRECTIONS: tuple[str, ...] = ("forward", "reverse", "symmetric")
DIR_FORMS: tuple[str, ...] = ("cosine", "proto_ce", "displacement", "l2")


def cross_interactive_kl(logits_po: Tensor, logits_op: Tensor, direction: KLDirection = "forward",
                         reduction: KLReduction = "numel") -> Tensor:
    """DiSa's L_CIR between the two crossed score distributions.

    ``logits_po``: prompted (masked) image vs. frozen text; ``logits_op``: frozen image vs.
    prompted text. ``forward`` is ``KL(q_po ‖ q_op)`` as the paper writes it, ``reverse`` swaps
    the arguments, ``symmetric`` averages both. Both sides carry gradients (no stop-gradient):
    each is a prompted branch paired with the other modality's frozen branch.
    """
    if direction == "forward":
        return kl_logits(logits_po, logits_op, reduction)
    if direction == "reverse":
        return kl_logits(logits_op, logits_po, reduction)
    if direction == "symmetric":
        return 0.5 * (kl_logits(logits_po, logits_op, reduction)
                      + kl_logits(logits_op, logits_po, reduction))
    raise ValueError(f"CIR KL direction must be one of {list(KL_DIRECTIONS)}, got {direction!r}")


def directional_cosine(image: Tensor, targets: Tensor) -> Tensor:
    """``(1/B) Σ_b (1 − cos(f_b, m_b))``: alignment by orientation only (scale-invariant)."""
    return (1.0 - F.cosine_similarity(image.float(), targets.float(), dim=-1)).mean()


def prototype_ce(image: Tensor, prototypes: Tensor, labels: Tensor, tau: float) -> Tensor:
    """``CE(cos(f_b, m_c) / tau, y_b)`` over all class prototypes (C, E)."""
    cos = F.normalize(image.float(), dim=-1) @ F.normalize(prototypes.float(), dim=-1).t()
    return cross_entropy(cos / tau, labels)


def displacement_cosine(image: Tensor, frozen_image: Tensor, targets: Tensor) -> Tensor:
    """``(1/B) Σ_b (1 − cos(f_b − f⁰_b, m_b − f⁰_b))``: the prompted feature should move away
    from the frozen one in the direction of its class prototype."""
    frozen = frozen_image.float()
    return directional_cosine(image.float() - frozen, targets.float() - frozen)


def squared_distance(image: Tensor, targets: Tensor) -> Tensor:
    """``(1/B) Σ_b ‖f_b − m_b‖²``: the proximity baseline "directional" is contrasted with."""
    return (image.float() - targets.float()).pow(2).sum(dim=-1).mean()


def directional_regularization(form: DirForm, image: Tensor, prototypes: Tensor, labels: Tensor,
                               frozen_image: Tensor | None = None, tau: float = 0.01) -> Tensor:
    """DiSa's L_DiR in one of its forms (``DIR_FORM``), on the unmasked prompted features.

    ``prototypes`` (C, E) are the class directions; ``frozen_image`` is needed by
    ``displacement`` only, ``tau`` by ``proto_ce`` only.
    """
    targets = prototypes[labels]
    if form == "cosine":
        return directional_cosine(image, targets)
    if form == "proto_ce":
        return prototype_ce(image, prototypes, labels, tau)
    if form == "displacement":
        if frozen_image is None:
            raise ValueError("DIR_FORM 'displacement' needs the frozen image features")
        return displacement_cosine(image, frozen_image, targets)
    if form == "l2":
        return squared_distance(image, targets)
    raise ValueError(f"DIR_FORM must be one of {list(DIR_FORMS)}, got {form!r}")


def representation_terms(logits_class: Tensor, logits_rep: Tensor, labels: Tensor,
                         image: Tensor, frozen_image: Tensor, text: Tensor, frozen_text: Tensor,
                         alpha: float, reg_weight: float) -> dict[str, Tensor]:
    """MMRL's and MMRL++'s weighted terms (docs/methods/mmrl.md); their sum is the loss:

    ``α·CE(s_c, y) + (1−α)·CE(s_r, y) + λ·[1 − mean_b cos(f_c,b, f̃_b)]
    + λ·[1 − mean_c cos(t_c, t̃_c)]``
    with ``f_c`` the class-token image features, ``f̃`` the frozen CLIP's of the same batch, ``t``
    the class features and ``t̃`` the frozen template's. Keys ``loss_ce``, ``loss_ce_rep``,
    ``loss_reg_image``, ``loss_reg_text``.
    """
    return {
        "loss_ce": alpha * cross_entropy(logits_class, labels),
        "loss_ce_rep": (1.0 - alpha) * cross_entropy(logits_rep, labels),
        "loss_reg_image": reg_weight * knowledge_guidance(image, frozen_image, eps=1e-8),
        "loss_reg_text": reg_weight * knowledge_guidance(text, frozen_text, eps=1e-8),
    }
