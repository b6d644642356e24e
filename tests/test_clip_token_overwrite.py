"""The text tower's one-layer per-sequence overwrite (``TokenOverwrite``; TCP's class-aware
tokens) against a straightforward reference: the stock CLIP blocks, full 77 positions, with the
tokens written in by hand before the chosen block."""
from __future__ import annotations

import re

import pytest
import torch

from disakit.clipkit.compat import clip
from disakit.clipkit.encoders import TextTower, TokenOverwrite


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = clip.model.CLIP(embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64,
                            vision_patch_size=8, context_length=77, vocab_size=49408,
                            transformer_width=64, transformer_heads=2, transformer_layers=3)
    return model.float().eval()


def reference(model, embeds, eot, layer, tokens, start, deep=()):
    """Stock blocks in CLIP's (L, N, D) layout with their 77x77 mask; writes by assignment."""
    x = (embeds + model.positional_embedding).permute(1, 0, 2).clone()
    for i, block in enumerate(model.transformer.resblocks):
        if 1 <= i <= len(deep):
            x[1:1 + deep[i - 1].shape[0]] = deep[i - 1][:, None, :]
        if i == layer:
            rows = tokens if tokens.dim() == 3 else tokens.expand(x.shape[1], -1, -1)
            x[start:start + rows.shape[1]] = rows.permute(1, 0, 2)
        x = block(x)
    x = model.ln_final(x.permute(1, 0, 2))
    return x[torch.arange(x.shape[0]), eot] @ model.text_projection


def random_pass(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    embeds = torch.randn(n, 77, 64, generator=g) * 0.1
    eot = torch.tensor([9, 14, 7, 11])[:n]
    return embeds, eot, torch.randn(n, 3, 64, generator=g)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_overwrite_equals_the_reference_at_every_layer(tiny, layer):
    embeds, eot, tokens = random_pass()
    tower = TextTower(tiny)
    with torch.no_grad():
        expected = reference(tiny, embeds, eot, layer, tokens, start=2)
        for truncate in (True, False):
            ours = tower.encode_embeddings(embeds, eot, truncate=truncate,
                                           token_overwrite=TokenOverwrite(layer, tokens, 2))
            assert (ours - expected).abs().max() <= 1e-5, (layer, truncate)
        plain = tower.encode_embeddings(embeds, eot)
    assert (plain - expected).abs().max() > 1e-3  # the overwrite does change the features


def test_shared_tokens_broadcast_and_deep_prompts_come_first(tiny):
    embeds, eot, tokens = random_pass()
    tower = TextTower(tiny)
    deep = [torch.randn(4, 64) * 0.1, torch.randn(4, 64) * 0.1]
    with torch.no_grad():
        shared = tower.encode_embeddings(embeds, eot,
                                         token_overwrite=TokenOverwrite(1, tokens[0], 1))
        assert (shared - reference(tiny, embeds, eot, 1, tokens[0], 1)).abs().max() <= 1e-5
        both = tower.encode_embeddings(embeds, eot, deep_prompts=deep,
                                       token_overwrite=TokenOverwrite(2, tokens, 3))
        assert (both - reference(tiny, embeds, eot, 2, tokens, 3, deep)).abs().max() <= 1e-5


def test_each_sequence_gets_gradients_only_into_its_own_tokens(tiny):
    embeds, eot, tokens = random_pass()
    tokens.requires_grad_()
    feats = TextTower(tiny).encode_embeddings(embeds, eot,
                                              token_overwrite=TokenOverwrite(1, tokens, 1))
    feats[2].sum().backward()  # sequence 2 sees only its own row
    assert tokens.grad[2].abs().sum() > 0
    assert torch.all(tokens.grad[[0, 1, 3]] == 0)


@pytest.mark.parametrize("overwrite, message", [
    (TokenOverwrite(3, torch.zeros(4, 2, 64)), "has 3 layers"),
    (TokenOverwrite(1, torch.zeros(3, 2, 64)), "hold 3 sequences"),
    (TokenOverwrite(1, torch.zeros(4, 2, 32)), "must be (N, n, 64)"),
    (TokenOverwrite(1, torch.zeros(4, 2, 64), start=7), "outside the 8 positions"),
])
def test_impossible_overwrites_fail_clearly(tiny, overwrite, message):
    embeds, _, _ = random_pass()
    eot = torch.full((4,), 7)  # the pass runs positions 0..7
    with pytest.raises(ValueError, match=re.escape(message)):
        TextTower(tiny).encode_embeddings(embeds, eot, token_overwrite=overwrite)
