"""Loss terms and Gaussian prompt aggregation against their formulas, on hand-built tensors."""
from __future__ import annotations

import pytest
import torch
from conftest import kl_by_hand
from torch import nn

from disakit.clipkit.gpa import PromptAggregator, gpa_weights
from disakit.clipkit.losses import (
    kl_logits,
    kl_numel,
    knowledge_guidance,
    l1_consistency,
    self_consistency_terms,
    total,
)


def test_knowledge_guidance_is_one_minus_mean_cosine():
    text = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    frozen = torch.tensor([[1.0, 0.0], [1.0, 0.0], [4.0, 3.0]])
    # cosines: 1, 0, 24/25
    expected = 1.0 - (1.0 + 0.0 + 24 / 25) / 3
    assert knowledge_guidance(text, frozen).item() == pytest.approx(expected, abs=1e-6)
    assert knowledge_guidance(frozen, frozen).item() == pytest.approx(0.0, abs=1e-6)


def test_l1_consistency_is_mean_absolute_difference():
    a = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.5, 4.0]])
    assert l1_consistency(a, b).item() == pytest.approx((1 + 3 + 0 + 4) / 4)



def test_kl_reductions_follow_their_normalisation():
    p = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    q = torch.tensor([[0.0, 1.0, 0.0], [1.0, -2.0, 0.0]])
    summed = kl_by_hand(p, q)
    assert kl_numel(p, q).item() == pytest.approx(summed / 6, rel=1e-5)
    assert kl_logits(p, q, "batchmean").item() == pytest.approx(summed / 2, rel=1e-5)
    assert kl_logits(p, q, "sum").item() == pytest.approx(summed, rel=1e-5)
    assert kl_numel(p, p).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="numel"):
        kl_logits(p, q, "mean")


def test_kl_numel_matches_promptsrc_kl_div_expression():
    """Upstream: F.kl_div(log_softmax(logits), log_softmax(zs_logits), 'sum', log_target) / numel."""
    logits, zs = torch.randn(4, 7), torch.randn(4, 7)
    upstream = nn.functional.kl_div(logits.log_softmax(1), zs.log_softmax(1), reduction="sum",
                                    log_target=True) / logits.numel()
    assert torch.allclose(kl_numel(zs, logits), upstream, atol=1e-6)


def test_self_consistency_terms_weights_and_direction():
    torch.manual_seed(0)
    text, frozen_text = torch.randn(3, 4), torch.randn(3, 4)
    image, frozen_image = torch.randn(2, 4), torch.randn(2, 4)
    logits, frozen_logits = torch.randn(2, 3), torch.randn(2, 3)
    terms = self_consistency_terms(text, frozen_text, image, frozen_image, logits, frozen_logits,
                                   text_weight=25, image_weight=10)
    assert terms["loss_scl_text"].item() == pytest.approx(
        25 * (text - frozen_text).abs().mean().item(), rel=1e-6)
    assert terms["loss_scl_image"].item() == pytest.approx(
        10 * (image - frozen_image).abs().mean().item(), rel=1e-6)
    # KL(p_frozen || p_prompted), not the reverse
    assert terms["loss_scl_logits"].item() == pytest.approx(
        kl_by_hand(frozen_logits, logits) / 6, rel=1e-5)
    assert total(terms).item() == pytest.approx(sum(t.item() for t in terms.values()), rel=1e-6)


def test_gpa_weights_published_base2new_setting():
    weights = gpa_weights(15, 1, 20)
    assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    expected = [0.004, 0.054, 0.242, 0.399, 0.242, 0.054, 0.004]  # epochs 12..18
    assert [round(w, 3) for w in weights[11:18]] == expected
    assert max(weights[:11] + weights[18:]) < 2e-4


@pytest.mark.parametrize("mean,std,epochs,first,peak_epoch", [
    (6, 10, 20, 0.055, 6), (30, 30, 50, 0.014, 30), (45, 5, 50, None, 45)])
def test_gpa_weights_other_published_settings(mean, std, epochs, first, peak_epoch):
    weights = gpa_weights(mean, std, epochs)
    assert sum(weights) == pytest.approx(1.0, abs=1e-12)
    assert weights.index(max(weights)) + 1 == peak_epoch
    if first is not None:
        assert weights[0] == pytest.approx(first, abs=1e-3)
    if (mean, std) == (45, 5):
        assert max(weights) == pytest.approx(0.092, abs=1e-3)


def test_gpa_weights_reject_bad_settings():
    with pytest.raises(ValueError, match="GPA_STD"):
        gpa_weights(15, 0, 20)
    with pytest.raises(ValueError, match="GPA_MEAN"):
        gpa_weights(1e6, 1, 20)


def _module(value: float) -> nn.Module:
    module = nn.Linear(2, 1)
    with torch.no_grad():
        module.weight.fill_(value)
        module.bias.fill_(2 * value)
    return module


def test_aggregator_sums_weighted_epochs_and_loads_them():
    agg = PromptAggregator([0.25, 0.75])
    agg.accumulate(_module(1.0), 1)
    agg.accumulate(_module(3.0), 2)
    target = _module(0.0)
    agg.load_into(target)
    assert agg.complete
    assert torch.allclose(target.weight, torch.full((1, 2), 0.25 * 1 + 0.75 * 3))
    assert torch.allclose(target.bias, torch.tensor([2 * (0.25 + 2.25)]))
    with pytest.raises(RuntimeError, match="expected epoch 3"):
        agg.accumulate(_module(0.0), 4)


def test_aggregator_state_round_trip_and_skip_renormalises():
    agg = PromptAggregator([0.2, 0.3, 0.5])
    agg.accumulate(_module(1.0), 1)
    restored = PromptAggregator([0.2, 0.3, 0.5])
    restored.load_state(agg.state(), torch.device("cpu"))
    for a in (agg, restored):
        a.accumulate(_module(2.0), 2)
    assert restored.epochs == 2
    assert all(torch.equal(agg.sum[k], restored.sum[k]) for k in agg.sum)

    skipped = PromptAggregator([0.2, 0.3, 0.5])
    skipped.skip_to(1)  # resumed from a checkpoint without GPA state: epochs 2..3 only
    skipped.accumulate(_module(2.0), 2)
    skipped.accumulate(_module(4.0), 3)
    target = _module(0.0)
    skipped.load_into(target)
    assert target.weight[0, 0].item() == pytest.approx((0.3 * 2 + 0.5 * 4) / 0.8)
