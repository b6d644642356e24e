"""DPL: decoupled attention vs. the stock CLIP blocks and nn.MultiheadAttention,
the decoupling identity, zero-shot equivalence at zero gates, text truncation and what trains, on
tiny random CLIPs (the scripts run end to end in test_trainers_dapt_dpl_e2e.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import toolkit_cfg

from disakit.clipkit.compat import clip
from disakit.clipkit.decoupled import (
    DecoupledAttention,
    DecoupledPrompts,
    decoupled_attention,
    decoupled_block_forward,
    encode_text_decoupled,
    instance_attention,
    prompt_attention,
    restricted_attention,
)
from disakit.clipkit.prompts import tokenize
from disakit.trainers.base import build_standalone
from disakit.trainers.dpl import DPLCLIP, DPLPromptLearner, DPLSettings

CLASSNAMES = ["cat", "golden_retriever", "a very long class name with many words", "car"]
TOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    """3 layers per tower and 2 heads in both (per-head gates are exercised)."""
    torch.manual_seed(0)
    model = clip.model.CLIP(embed_dim=32, image_resolution=32, vision_layers=3, vision_width=128,
                            vision_patch_size=16, context_length=77, vocab_size=49408,
                            transformer_width=64, transformer_heads=2, transformer_layers=3)
    with torch.no_grad():
        model.logit_scale.fill_(torch.tensor(100.0).log())
    return model.float().eval()


def dpl_settings(dataset: str, **kw) -> DPLSettings:
    """DPL's settings as the trainer reads them, for ``dataset``, with ``TRAINER.DPL`` keys set."""
    opts = {"PROMPT_DEPTH_TEXT": 3, "PROMPT_DEPTH_VISION": 3, **kw}
    cfg = toolkit_cfg("DPL", "DATASET.NAME", dataset,
                      *(x for key, value in opts.items() for x in (f"TRAINER.DPL.{key}", value)))
    return DPLSettings.from_cfg(cfg)


def stock_logits(model, images, template="a photo of a {}."):
    texts = [template.format(c.replace("_", " ")) for c in CLASSNAMES]
    img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(model.encode_text(tokenize(texts)), dim=-1)
    return 100.0 * img @ txt.t()


def randomize_(prompts: DecoupledPrompts, gate: float = 0.5) -> DecoupledPrompts:
    with torch.no_grad():
        prompts.delta.normal_(0.0, 0.5)
        if prompts.gate is not None:
            prompts.gate.uniform_(-gate, gate)
    return prompts


# ------------------------------------------------------------------------ attention algebra
@pytest.mark.parametrize("causal", [False, True])
def test_joint_i2p_equals_multihead_attention_on_x_and_p(tiny, causal):
    block = (tiny.transformer if causal else tiny.visual.transformer).resblocks[0]
    n, m, width = 6, 3, block.attn.embed_dim
    y = torch.randn(2, n + m, width)
    ours = decoupled_attention(block.attn, y, n, DecoupledAttention("joint"), causal=causal,
                               eot=torch.full((2,), n - 1) if causal else None)
    mask = None
    if causal:  # instances: causal among X, every prompt; prompts: everything
        mask = torch.zeros(n + m, n + m)
        mask[:n, :n] = torch.full((n, n), float("-inf")).triu(1)
    ref = block.attn(*(y.transpose(0, 1),) * 3, need_weights=False, attn_mask=mask)[0]
    assert (ours - ref.transpose(0, 1)).abs().max() <= TOL


@pytest.mark.parametrize("tower", ["text", "vision"])
def test_without_prompts_each_block_equals_the_stock_block(tiny, tower):
    blocks = tiny.transformer.resblocks if tower == "text" else tiny.visual.transformer.resblocks
    length = 77 if tower == "text" else 5
    x = torch.randn(2, length, blocks[0].attn.embed_dim)
    empty = torch.empty(2, 0, x.shape[-1])
    for block in blocks:
        ours, _ = decoupled_block_forward(block, x, empty, DecoupledAttention(),
                                          torch.ones(2), causal=tower == "text")
        assert (ours - block(x.transpose(0, 1)).transpose(0, 1)).abs().max() <= TOL


def test_instance_rows_combine_per_the_decoupling_identity():
    """joint = (1-λ) A_X + λ A_P with λ = Z_P/(Z_P+Z_X); gated = A_X + tanh(g) A_P."""
    torch.manual_seed(1)
    n, m = 5, 3
    q, k, v = (torch.randn(2, 3, n + m, 4) for _ in range(3))
    q_x, k_x, v_x, k_p, v_p = q[:, :, :n], k[:, :, :n], v[:, :, :n], k[:, :, n:], v[:, :, n:]
    for causal in (False, True):
        mask = torch.ones(n, n, dtype=torch.bool).tril() if causal else None
        a_x, log_zx = restricted_attention(q_x, k_x, v_x, mask)
        a_p, log_zp = restricted_attention(q_x, k_p, v_p)
        lam = torch.sigmoid(log_zp - log_zx)
        joint = instance_attention(q_x, k, v, n, DecoupledAttention("joint"), causal=causal)
        assert (joint - ((1 - lam) * a_x + lam * a_p)).abs().max() <= TOL
        gamma = torch.tanh(torch.tensor([0.3, -0.7, 1.2]))
        gated = instance_attention(q_x, k, v, n, DecoupledAttention("gated"), gamma, causal)
        assert (gated - (a_x + gamma.view(1, 3, 1, 1) * a_p)).abs().max() <= TOL
        assert (gated - a_x).abs().max() > 1e-2  # the prompts do contribute


def test_prompt_rows_see_their_sequence_up_to_eot_and_the_prompts():
    torch.manual_seed(2)
    n, m, eot = 6, 2, torch.tensor([3, 5])
    q, k, v = (torch.randn(2, 1, n + m, 4) for _ in range(3))
    cases = {("full", "full"): lambda pos: pos <= eot[:, None], ("causal", "full"): lambda pos:
             (pos == 0).expand(2, n), ("none", "full"): lambda pos: torch.zeros(2, n, dtype=bool),
             ("full", "none"): lambda pos: pos <= eot[:, None]}
    for (p2i, p2p), visible in cases.items():
        attention = DecoupledAttention("gated", p2i, p2p)
        x_ok = visible(torch.arange(n))
        mask = torch.cat([x_ok, torch.full((2, m), p2p == "full")], 1)[:, None, None, :]
        expected, _ = restricted_attention(q[:, :, n:], k, v, mask)
        ours = prompt_attention(q[:, :, n:], k, v, n, attention, causal=True, eot=eot)
        assert (ours - expected).abs().max() <= TOL, (p2i, p2p)
    with pytest.raises(ValueError, match="P2P"):
        DecoupledAttention("gated", "none", "none")


# ------------------------------------------------------------------------ the model
@torch.no_grad()
def test_zero_gates_with_residual_prompts_give_zero_shot_clip(tiny):
    images = torch.randn(3, 3, 32, 32)
    model = DPLCLIP(tiny, CLASSNAMES, dpl_settings("ImageNet")).eval()
    with torch.no_grad():
        model.prompt_learner.text.delta[0].normal_(0.0, 1.0)  # Δ_0 large, Δ_{≥1} = 0, g = 0
    assert (model(images) - stock_logits(tiny, images)).abs().max() <= 1e-4
    custom = DPLCLIP(tiny, CLASSNAMES, dpl_settings("EuroSAT", TEXT_TEMPLATE="custom"))
    expected = stock_logits(tiny, images, "a centered satellite photo of {}.")
    assert (custom(images) - expected).abs().max() <= 1e-4
    randomize_(model.prompt_learner.text)
    assert (model(images) - stock_logits(tiny, images)).abs().max() > 1e-3  # gates open: differs
    per_layer = DPLCLIP(tiny, CLASSNAMES, dpl_settings("ImageNet", GATE_PER_HEAD=False))
    assert (per_layer(images) - stock_logits(tiny, images)).abs().max() <= 1e-4
    randomize_(per_layer.prompt_learner.vision)
    assert per_layer.prompt_learner.vision.gate.shape == (3, 1)
    assert (per_layer(images) - stock_logits(tiny, images)).abs().max() > 1e-3


@torch.no_grad()
def test_text_truncation_is_exact_and_prompt_rows_ignore_padding(tiny):
    model = DPLCLIP(tiny, CLASSNAMES, dpl_settings("ImageNet"))
    prompts = randomize_(model.prompt_learner.text)
    tokens = tokenize([f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])
    short = encode_text_decoupled(model.text, tokens, prompts, truncate=True)
    full = encode_text_decoupled(model.text, tokens, prompts, truncate=False)
    assert (short - full).abs().max() <= TOL
    after_eot = torch.arange(77)[None, :] > tokens.argmax(-1)[:, None]
    noisy = torch.where(after_eot, torch.randint(1, 40000, tokens.shape), tokens)
    padded = encode_text_decoupled(model.text, noisy, prompts, truncate=False)
    assert (padded - full).abs().max() <= TOL
    assert torch.equal(short.argmax(0), full.argmax(0))


def by_hand_decoupled(blocks, x, prompts, causal=False, eot=None):
    """Reference: the stock blocks in a plain loop of decoupled_block_forward, the prompts moved
    by next_prompts between blocks (what the towers' side stream must reproduce)."""
    p = prompts.delta[0].expand(x.shape[0], -1, -1)
    gammas, last = prompts.gammas(), len(blocks) - 1
    for i, block in enumerate(blocks):
        x, p = decoupled_block_forward(block, x, p, prompts.attention, gammas[i], causal, eot,
                                       prompt_out=i < last)
        if i < last:
            p = prompts.next_prompts(p, i + 1)
    return x


@pytest.mark.parametrize("i2p,update", [("gated", "residual"), ("joint", "replace")])
@torch.no_grad()
def test_tower_features_match_a_by_hand_decoupled_pass(tiny, i2p, update):
    """Open gates, per-layer deltas: both towers' features equal the stock modules run by hand."""
    model = DPLCLIP(tiny, CLASSNAMES, dpl_settings("ImageNet", I2P=i2p, PROMPT_UPDATE=update))
    text, vision = (randomize_(p) for p in (model.prompt_learner.text,
                                            model.prompt_learner.vision))
    tokens = model.tokens
    eot = tokens.argmax(-1)
    x = tiny.token_embedding(tokens) + tiny.positional_embedding[:tokens.shape[1]]
    x = by_hand_decoupled(tiny.transformer.resblocks, x, text, causal=True, eot=eot)
    expected = tiny.ln_final(x[torch.arange(len(tokens)), eot]) @ tiny.text_projection
    assert (model.text_features() - F.normalize(expected, dim=-1)).abs().max() <= 1e-6
    images = torch.randn(3, 3, 32, 32)
    v = tiny.visual
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(3, 1, -1), x], dim=1) + v.positional_embedding
    x = by_hand_decoupled(v.transformer.resblocks, v.ln_pre(x), vision)
    expected = v.ln_post(x[:, 0]) @ v.proj
    assert (model.image_features(images) - F.normalize(expected, dim=-1)).abs().max() <= 1e-6


def test_learned_parameters_and_their_count_at_vit_b16():
    def learner(**kw):
        return DPLPromptLearner(DecoupledPrompts(4, 512, 9, 12, 8, **kw),
                                DecoupledPrompts(4, 768, 9, 12, 12, **kw))
    count = lambda mod: sum(p.numel() for p in mod.parameters())  # noqa: E731
    assert count(learner()) == 46_320  # 18,432 + 27,648 + 96 + 144 gates
    assert count(learner(gate_per_head=False)) == 46_080 + 24
    assert count(learner(attention=DecoupledAttention("joint"))) == 46_080  # no unused gates
    assert set(learner().state_dict()) == {"text.delta", "text.gate", "vision.delta", "vision.gate"}
    residual = DecoupledPrompts(4, 8, 3, 3, 1)
    replace = DecoupledPrompts(4, 8, 3, 3, 1, update="replace")
    assert residual.delta[1:].abs().max() == 0 and residual.delta[0].abs().max() > 0
    assert replace.delta[1:].abs().max() > 0


@torch.no_grad()
def test_modality_leaves_the_other_tower_frozen(tiny):
    images = torch.randn(2, 3, 32, 32)
    text_only = DPLCLIP(tiny, CLASSNAMES, dpl_settings("x", MODALITY="text"))
    assert text_only.prompt_learner.vision is None
    assert torch.equal(text_only.image_features(images), text_only.frozen_image_features(images))
    vision_only = DPLCLIP(tiny, CLASSNAMES, dpl_settings("x", MODALITY="vision"))
    randomize_(vision_only.prompt_learner.vision)
    assert vision_only.prompt_learner.text is None
    expected = stock_logits(tiny, images)
    frozen_text = F.normalize(tiny.encode_text(tokenize(
        [f"a photo of a {c.replace('_', ' ')}." for c in CLASSNAMES])), dim=-1)
    assert (vision_only.text_features() - frozen_text).abs().max() <= TOL
    assert (vision_only(images) - expected).abs().max() > 1e-3


def test_config_errors_name_the_key(tiny):
    with pytest.raises(ValueError, match="PROMPT_DEPTH_TEXT"):
        DPLCLIP(tiny, CLASSNAMES, dpl_settings("x", PROMPT_DEPTH_TEXT=4))
    with pytest.raises(ValueError, match="TRAINER.DPL.I2P"):
        dpl_settings("x", I2P="soft")
    with pytest.raises(ValueError, match="TEXT_TEMPLATE"):
        dpl_settings("x", TEXT_TEMPLATE="a photo")


def test_training_steps_change_only_the_prompts(tiny):
    cfg = toolkit_cfg("DPL", "TRAINER.DPL.PROMPT_DEPTH_TEXT", 3,
                      "TRAINER.DPL.PROMPT_DEPTH_VISION", 3, "TRAINER.DPL.GATE_INIT", 0.1,
                      "INPUT.SIZE", (32, 32), "OPTIM.LR", 0.5)
    frozen = {k: v.clone() for k, v in tiny.state_dict().items()}
    trainer = build_standalone(cfg, tiny, CLASSNAMES)
    learner = trainer.model.prompt_learner
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    batch = {"img": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 3])}
    for _ in range(2):
        summary = trainer.forward_backward(batch)
    assert set(summary) == {"loss", "acc", "gate"} and summary["gate"] > 0
    assert all(not torch.equal(before[k], v) for k, v in learner.state_dict().items())
    assert all(torch.equal(frozen[k], v) for k, v in tiny.state_dict().items())
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable == {f"prompt_learner.{k}" for k in before}
