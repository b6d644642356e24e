"""Exactness of the prompt-injection loop (docs/methods/README.md) on a tiny random CLIP."""
from __future__ import annotations

import pytest
import torch

from disakit.clipkit.compat import clip
from disakit.clipkit.encoders import TextTower, VisionTower, block_forward
from disakit.clipkit.prompts import PromptContext, init_context, tokenize

CLASSNAMES = ["cat", "golden retriever", "a_very_long_class_name with many words", "car"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = clip.model.CLIP(embed_dim=32, image_resolution=32, vision_layers=3, vision_width=64,
                            vision_patch_size=8, context_length=77, vocab_size=49408,
                            transformer_width=64, transformer_heads=2, transformer_layers=3)
    return model.float().eval()


def test_block_forward_equals_stock_block(tiny):
    block = tiny.transformer.resblocks[0]
    x = torch.randn(3, 77, 64)
    expected = block(x.transpose(0, 1)).transpose(0, 1)  # stock: (L, N, D) with its 77x77 mask
    assert torch.allclose(block_forward(block, x, causal=True), expected, atol=1e-5)


def test_text_tower_reproduces_encode_text_and_truncation_is_exact(tiny):
    tokens = tokenize([f"a photo of a {c}." for c in CLASSNAMES])
    tower = TextTower(tiny)
    expected = tiny.encode_text(tokens)
    full = tower.encode_tokens(tokens, truncate=False)
    short = tower.encode_tokens(tokens, truncate=True)
    assert (full - expected).abs().max() <= 1e-5
    assert (short - full).abs().max() <= 1e-5


def test_vision_tower_reproduces_encode_image(tiny):
    images = torch.randn(2, 3, 32, 32)
    out = VisionTower(tiny)(images, return_tokens=True)
    assert (out.features - tiny.encode_image(images)).abs().max() <= 1e-5
    assert out.tokens.shape == (2, 1 + 16, 64)


def test_deep_text_prompts_are_truncation_invariant(tiny):
    tower = TextTower(tiny)
    init = init_context(tower.embed, tower.width, 4, "", policy="words")
    ctx = PromptContext(init)
    ctx.set_classnames(CLASSNAMES, tower.embed)
    deep = [torch.randn(4, 64) * 0.1, torch.randn(4, 64) * 0.1]
    embeds, eot = ctx()
    full_embeds = torch.cat([embeds, tower.embed(tokenize(["x"]))[:, :1].expand(
        len(CLASSNAMES), 77 - embeds.shape[1], -1)], dim=1)  # pad: content after EOT is ignored
    a = tower.encode_embeddings(embeds, eot, deep_prompts=deep)
    b = tower.encode_embeddings(full_embeds, eot, deep_prompts=deep, truncate=False)
    assert (a - b).abs().max() <= 1e-5


def _hooked_vision(tiny, images, prompts, deep):
    """Reference: prompts injected with forward pre-hooks into the *stock* visual forward."""
    handles = [tiny.visual.ln_pre.register_forward_pre_hook(
        lambda m, a: (torch.cat([a[0], prompts.expand(a[0].shape[0], -1, -1)], dim=1),))]
    n = prompts.shape[-2]
    for i, p in enumerate(deep, start=1):
        def hook(m, a, p=p):  # stock blocks see (L, N, D)
            x = a[0]
            return (torch.cat([x[:-n], p[:, None, :].expand(-1, x.shape[1], -1)], dim=0),)
        handles.append(tiny.visual.transformer.resblocks[i].register_forward_pre_hook(hook))
    try:
        return tiny.encode_image(images)
    finally:
        for h in handles:
            h.remove()


def test_deep_visual_prompts_match_hook_reference(tiny):
    images = torch.randn(2, 3, 32, 32)
    prompts = torch.randn(1, 4, 64) * 0.1
    deep = [torch.randn(4, 64) * 0.1, torch.randn(4, 64) * 0.1]
    ours = VisionTower(tiny)(images, prompts[0], deep_prompts=deep).features
    assert (ours - _hooked_vision(tiny, images, prompts, deep)).abs().max() <= 1e-5


def test_prompt_context_layouts_place_class_tokens(tiny):
    tower = TextTower(tiny)
    for position in ("end", "middle", "front"):
        init = init_context(tower.embed, tower.width, 4, "", policy="words")
        ctx = PromptContext(init, position)
        ctx.set_classnames(CLASSNAMES, tower.embed)
        embeds, eot = ctx()
        ref = tower.embed(tokenize([f"X X X X {c.replace('_', ' ')}." for c in CLASSNAMES]))
        assert embeds.shape[1] == int(eot.max()) + 1
        i = 1  # golden retriever: 2 BPE tokens
        name = ref[i, 5:7]
        start = {"end": 5, "middle": 3, "front": 1}[position]
        assert torch.equal(embeds[i, start:start + 2], name)


def test_phrase_init_policies(tiny):
    tower = TextTower(tiny)
    words = init_context(tower.embed, tower.width, 16, "a photo of a", policy="words")
    assert words.n_ctx == 4 and words.prefix_text == "a photo of a"
    first2 = init_context(tower.embed, tower.width, 2, "a photo of a", policy="first_n")
    assert first2.n_ctx == 2 and torch.equal(first2.vectors, words.vectors[:2])
    rand = init_context(tower.embed, tower.width, 8, "a photo of a", policy="first_n")
    assert rand.prefix_text == " ".join(["X"] * 8)


def test_shifted_context_builds_per_image_prompts(tiny):
    tower = TextTower(tiny)
    ctx = PromptContext(init_context(tower.embed, tower.width, 4, "a photo of a"))
    ctx.set_classnames(CLASSNAMES, tower.embed)
    shift = torch.randn(3, 64)
    embeds, _ = ctx(shift)
    plain, _ = ctx()
    assert embeds.shape == (3, len(CLASSNAMES), *plain.shape[1:])
    assert torch.allclose(embeds[1, :, 1:5], plain[:, 1:5] + shift[1])
    assert torch.equal(embeds[2, :, 5:], plain[:, 5:])
