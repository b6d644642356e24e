"""DiSa's loss terms (L_CIR, L_DiR forms) and saliency-aware masking against their formulas, on
hand-built tensors (docs/methods/disa.md); the trainer that uses them is in test_disa_trainer.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import kl_by_hand

from disakit.clipkit.encoders import VisionTower
from disakit.clipkit.losses import cross_interactive_kl, directional_regularization
from disakit.clipkit.random_clip import build_random_clip
from disakit.clipkit.saliency import (
    GREY,
    heat_colours,
    least_salient_patches,
    mask_fill_value,
    mask_patches,
    num_masked_patches,
    patch_saliency,
    random_patches,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ------------------------------------------------------------------------ L_CIR

def test_cir_forward_is_kl_of_q_po_to_q_op_and_reverse_differs():
    po = torch.tensor([[3.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, 0.0], [1.0, 1.0, 4.0, -2.0]])
    op = torch.tensor([[0.0, 1.0, 0.0, 0.0], [2.0, -1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 3.0]])
    forward, reverse = kl_by_hand(po, op), kl_by_hand(op, po)
    assert abs(forward - reverse) > 0.1  # the example can tell the directions apart
    assert cross_interactive_kl(po, op).item() == pytest.approx(forward / 12, rel=1e-5)
    assert cross_interactive_kl(po, op, "reverse").item() == pytest.approx(reverse / 12, rel=1e-5)
    assert cross_interactive_kl(po, op, "symmetric").item() == pytest.approx(
        (forward + reverse) / 24, rel=1e-5)
    assert cross_interactive_kl(po, op, "forward", "batchmean").item() == pytest.approx(
        forward / 3, rel=1e-5)
    with pytest.raises(ValueError, match="forward"):
        cross_interactive_kl(po, op, "backward")


def test_cir_is_zero_when_the_crossed_distributions_coincide():
    logits = torch.randn(5, 7)
    for direction in ("forward", "reverse", "symmetric"):
        assert cross_interactive_kl(logits, logits.clone(), direction).item() == pytest.approx(
            0.0, abs=1e-6)
        shifted = logits + torch.randn(5, 1)  # same softmax per row
        assert cross_interactive_kl(logits, shifted, direction).item() == pytest.approx(
            0.0, abs=1e-5)


def test_cir_gradients_reach_both_sides():
    po, op = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    cross_interactive_kl(po, op).backward()
    assert po.grad.abs().sum() > 0 and op.grad.abs().sum() > 0  # no stop-gradient


# ------------------------------------------------------------------------ L_DiR
def _setup(seed: int = 0):
    torch.manual_seed(seed)
    image, protos = torch.randn(4, 6), F.normalize(torch.randn(3, 6), dim=-1)
    return image, protos, torch.tensor([2, 0, 1, 2])


def test_cosine_dir_is_scale_invariant_and_zero_along_prototypes():
    image, protos, labels = _setup()
    value = directional_regularization("cosine", image, protos, labels)
    expected = sum(1 - float(F.cosine_similarity(image[b], protos[labels[b]], dim=0))
                   for b in range(4)) / 4
    assert value.item() == pytest.approx(expected, rel=1e-6)
    rescaled = directional_regularization("cosine", image * torch.tensor([[3.0], [0.1], [7.0], [1.5]]),
                                          protos * 0.2, labels)
    assert rescaled.item() == pytest.approx(value.item(), rel=1e-5)
    along = protos[labels] * torch.tensor([[2.0], [0.5], [1.0], [9.0]])
    assert directional_regularization("cosine", along, protos, labels).item() == pytest.approx(
        0.0, abs=1e-6)
    assert directional_regularization("cosine", -along, protos, labels).item() == pytest.approx(2.0)


def test_proto_ce_displacement_and_l2_follow_their_formulas():
    image, protos, labels = _setup(1)
    frozen = F.normalize(torch.randn(4, 6), dim=-1)
    tau = 0.05
    cos = F.normalize(image, dim=-1) @ protos.t()
    expected_ce = -sum(float(torch.log_softmax(cos[b] / tau, 0)[labels[b]]) for b in range(4)) / 4
    assert directional_regularization("proto_ce", image, protos, labels, tau=tau).item() == \
        pytest.approx(expected_ce, rel=1e-5)
    expected_disp = sum(1 - float(F.cosine_similarity(image[b] - frozen[b],
                                                      protos[labels[b]] - frozen[b], dim=0))
                        for b in range(4)) / 4
    assert directional_regularization("displacement", image, protos, labels, frozen).item() == \
        pytest.approx(expected_disp, rel=1e-5)
    expected_l2 = sum(float(((image[b] - protos[labels[b]]) ** 2).sum()) for b in range(4)) / 4
    assert directional_regularization("l2", image, protos, labels).item() == pytest.approx(
        expected_l2, rel=1e-6)
    # l2 is a proximity measure: rescaling changes it, unlike the directional cosine
    assert directional_regularization("l2", image * 2, protos, labels).item() != pytest.approx(
        expected_l2, rel=1e-3)
    with pytest.raises(ValueError, match="frozen image"):
        directional_regularization("displacement", image, protos, labels)
    with pytest.raises(ValueError, match="DIR_FORM"):
        directional_regularization("angle", image, protos, labels)


# ------------------------------------------------------------------------ choosing patches
def test_k_is_round_ratio_times_patches():
    assert num_masked_patches(0.25, 196) == 49 and num_masked_patches(0.1, 196) == 20
    assert num_masked_patches(0.5, 196) == 98 and num_masked_patches(0.25, 49) == round(0.25 * 49)
    assert num_masked_patches(0.0, 49) == 0 and num_masked_patches(1.0, 49) == 49
    with pytest.raises(ValueError, match="MASK_RATIO"):
        num_masked_patches(1.5, 49)


def test_least_salient_patches_match_a_stable_argsort_and_break_ties_to_lower_index():
    torch.manual_seed(0)
    scores = torch.randn(5, 49)
    scores[0, 10:20] = -5.0  # ten equal lowest scores: the first k by index must win
    for k in (0, 3, 12, 49):
        idx = least_salient_patches(scores, k)
        expected = np.argsort(scores.numpy(), axis=-1, kind="stable")[:, :k]
        assert np.array_equal(idx.numpy(), expected)
    assert least_salient_patches(scores, 4)[0].tolist() == [10, 11, 12, 13]
    ties = torch.tensor([[0.5, 0.1, 0.1, 0.3, 0.1]])
    assert least_salient_patches(ties, 2).tolist() == [[1, 2]]
    assert least_salient_patches(torch.zeros(1, 6), 3).tolist() == [[0, 1, 2]]


def test_random_patches_are_distinct_and_in_range():
    idx = random_patches(8, 49, 12, torch.device("cpu"))
    assert idx.shape == (8, 12) and idx.min() >= 0 and idx.max() < 49
    assert all(len(set(row.tolist())) == 12 for row in idx)


# ------------------------------------------------------------------------ painting patches
@pytest.mark.parametrize("fill, expected", [
    ("grey", [(GREY - m) / s for m, s in zip(CLIP_MEAN, CLIP_STD)]),
    ("mean", [0.0, 0.0, 0.0]),
    ("black", [-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)]),
])
def test_fill_values_in_normalised_space(fill, expected):
    value = mask_fill_value(fill, CLIP_MEAN, CLIP_STD)
    assert value.dtype == torch.float32
    assert torch.equal(value, torch.tensor(expected, dtype=torch.float32))  # exact, fp32-rounded
    pixel = {"grey": [128 / 255] * 3, "mean": list(CLIP_MEAN), "black": [0.0] * 3}[fill]
    assert torch.equal(mask_fill_value(fill, CLIP_MEAN, CLIP_STD, normalized=False),
                       torch.tensor(pixel, dtype=torch.float32))  # un-normalised inputs
    if fill == "mean":
        assert value.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="MASK_FILL"):
        mask_fill_value("white", CLIP_MEAN, CLIP_STD)


def test_mask_paints_exactly_the_selected_patches_with_the_fill():
    torch.manual_seed(0)
    images, patch = torch.rand(2, 3, 28, 28) + 5.0, 4  # 7x7 grid; values never equal the fill
    idx = torch.tensor([[0, 8, 48], [6, 7, 42]])
    fill = mask_fill_value("grey", CLIP_MEAN, CLIP_STD)
    masked = mask_patches(images, idx, patch, fill)
    for b in range(2):
        expected = images[b].clone()
        for i in idx[b].tolist():
            r, c = divmod(i, 7)
            expected[:, r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = fill.view(3, 1, 1)
        assert torch.equal(masked[b], expected)
    changed = (masked != images).any(dim=1)
    assert changed.sum().item() == 2 * 3 * patch * patch
    assert not torch.equal(masked, images) and images.min() >= 5.0  # input left untouched


def test_mask_leaves_pixels_beyond_the_grid_alone():
    images = torch.rand(1, 3, 30, 30)  # CLIP's stride-4 conv ignores the last 2 rows/columns
    masked = mask_patches(images, torch.tensor([[48]]), 4, torch.zeros(3))
    assert torch.equal(masked[..., 24:28, 24:28], torch.zeros(1, 3, 4, 4))
    assert torch.equal(masked[..., 28:, :], images[..., 28:, :])


# ------------------------------------------------------------------------ scoring patches
def test_patch_saliency_is_the_patch_text_cosine_without_gradient():
    tower = VisionTower(build_random_clip("tiny", seed=0))
    torch.manual_seed(0)
    images = torch.randn(2, 3, 224, 224)
    tokens = tower(images, prompts=torch.randn(3, tower.width, requires_grad=True),
                   return_tokens=True).tokens
    assert tokens.requires_grad
    text, targets = torch.randn(5, 64), torch.tensor([4, 1])
    scores = patch_saliency(tokens, tower, text, targets)
    assert scores.shape == (2, tower.grid_size ** 2) == (2, 49)
    assert not scores.requires_grad and scores.grad_fn is None
    with torch.no_grad():
        proj = tower.visual.ln_post(tokens[:, 1:50]) @ tower.visual.proj
    expected = F.cosine_similarity(proj, text[targets][:, None, :], dim=-1)
    assert torch.allclose(scores, expected, atol=1e-5)
    with pytest.raises(ValueError, match="patches"):
        patch_saliency(tokens[:, :10], tower, text, targets)


def test_heat_colours_run_from_blue_to_red():
    colours = heat_colours(np.array([0.0, 0.5, 1.0]))
    assert colours[0, 2] > colours[0, 0] and colours[2, 0] > colours[2, 2]
    assert heat_colours(np.zeros(4)).shape == (4, 3)  # flat scores: no division by zero

