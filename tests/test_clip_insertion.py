"""The sequence-growing insertion slot of the block loop (disakit/clipkit/encoders.py,
``TokenInsertion``: MMRL's insertion and per-layer overwrite, MMRL++'s beta-mixing), against a
straightforward reference: the *stock* CLIP blocks run on the explicitly concatenated sequence,
with the causal mask rebuilt at the grown width and the EOT feature read at the shifted index."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from disakit.clipkit.compat import clip
from disakit.clipkit.encoders import TextTower, TokenInsertion, VisionTower
from disakit.clipkit.prompts import tokenize

SENTENCES = ["a photo of a cat.", "a photo of a golden retriever, a type of pet.", "car texture."]
K = 3


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = clip.model.CLIP(embed_dim=32, image_resolution=32, vision_layers=4, vision_width=64,
                            vision_patch_size=8, context_length=77, vocab_size=49408,
                            transformer_width=64, transformer_heads=2, transformer_layers=4)
    return model.float().eval()


def layer_tokens(n_sets: int, width: int, per_sequence: int = 0) -> list[torch.Tensor]:
    shape = (per_sequence, K, width) if per_sequence else (K, width)
    return [torch.randn(*shape) * 0.5 for _ in range(n_sets)]


@contextmanager
def causal_mask(block, width: int):
    """The stock block's additive causal mask, rebuilt at ``width`` (as the official code does)."""
    saved = block.attn_mask
    block.attn_mask = torch.empty(width, width).fill_(float("-inf")).triu_(1)
    try:
        yield
    finally:
        block.attn_mask = saved


def refresh(x: torch.Tensor, tokens: torch.Tensor, beta: float) -> torch.Tensor:
    """Positions 1..K of x (N, L, D) := beta * tokens + (1 - beta) * x[:, 1:1+K]."""
    x = x.clone()
    tokens = tokens.expand(x.shape[0], -1, -1)
    x[:, 1:1 + K] = beta * tokens + (1 - beta) * x[:, 1:1 + K]
    return x


def reference_text(model, embeds, eot, layer, tokens, beta=1.0):
    """Stock blocks, full 77 positions, sequence concatenated by hand at block ``layer``."""
    x = embeds + model.positional_embedding
    for i, block in enumerate(model.transformer.resblocks):
        step = i - layer
        if step == 0:
            x = torch.cat([x[:, :1], tokens[0].expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        elif 0 < step < len(tokens) and tokens[step] is not None:
            x = refresh(x, tokens[step], beta)
        with causal_mask(block, x.shape[1]):
            x = block(x.transpose(0, 1)).transpose(0, 1)
    shifted = eot + (K if layer < len(model.transformer.resblocks) else 0)
    return model.ln_final(x[torch.arange(x.shape[0]), shifted]) @ model.text_projection


def reference_vision(model, images, layer, tokens, beta=1.0):
    """Stock visual blocks on the explicitly concatenated sequence: (feature, final tokens)."""
    v = model.visual
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + v.positional_embedding
    x = v.ln_pre(x)
    for i, block in enumerate(v.transformer.resblocks):
        step = i - layer
        if step == 0:
            x = torch.cat([x[:, :1], tokens[0].expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        elif 0 < step < len(tokens) and tokens[step] is not None:
            x = refresh(x, tokens[step], beta)
        x = block(x.transpose(0, 1)).transpose(0, 1)
    return v.ln_post(x[:, 0]) @ v.proj, x


@pytest.mark.parametrize("layer, beta", [(0, 1.0), (1, 1.0), (2, 0.3), (1, 0.0)])
@torch.no_grad()
def test_text_insertion_equals_stock_blocks_on_the_concatenated_sequence(tiny, layer, beta):
    tower = TextTower(tiny)
    ids = tokenize(SENTENCES)
    eot = ids.argmax(-1)
    embeds = tiny.token_embedding(ids)
    tokens = layer_tokens(tower.num_layers - layer, tower.width)
    insertion = TokenInsertion(layer, tokens, beta=beta)
    expected = reference_text(tiny, embeds, eot, layer, tokens, beta)
    truncated = tower.encode_embeddings(embeds, eot, insertion=insertion)
    full = tower.encode_embeddings(embeds, eot, insertion=insertion, truncate=False)
    assert (truncated - expected).abs().max() <= 1e-5
    assert (full - expected).abs().max() <= 1e-5
    # Reading at the unshifted EOT would give another feature: the shift matters.
    assert (truncated - tower.encode_tokens(ids)).abs().max() > 1e-3


@torch.no_grad()
def test_text_insertion_per_sequence_tokens_and_carried_layers(tiny):
    """(N, K, D) tokens (one set per class), and a None entry that carries positions on."""
    tower = TextTower(tiny)
    ids = tokenize(SENTENCES)
    eot, embeds = ids.argmax(-1), tiny.token_embedding(ids)
    tokens = layer_tokens(3, tower.width, per_sequence=len(SENTENCES))
    tokens[1] = None
    insertion = TokenInsertion(1, tokens, beta=0.6)
    expected = reference_text(tiny, embeds, eot, 1, tokens, 0.6)
    assert (tower.encode_embeddings(embeds, eot, insertion=insertion) - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("layer, beta", [(0, 1.0), (2, 1.0), (1, 0.7)])
@torch.no_grad()
def test_vision_insertion_equals_stock_blocks_on_the_concatenated_sequence(tiny, layer, beta):
    tower = VisionTower(tiny)
    images = torch.randn(2, 3, 32, 32)
    tokens = layer_tokens(tower.num_layers - layer, tower.width)
    out = tower(images, insertion=TokenInsertion(layer, tokens, beta=beta), return_tokens=True)
    feature, states = reference_vision(tiny, images, layer, tokens, beta)
    assert out.tokens.shape == (2, 1 + K + 16, 64)
    assert (out.features - feature).abs().max() <= 1e-5
    assert (out.tokens - states).abs().max() <= 1e-5


@torch.no_grad()
def test_insertion_in_the_last_block_only_and_beta_one_is_a_plain_overwrite(tiny):
    tower = VisionTower(tiny)
    images = torch.randn(2, 3, 32, 32)
    last = TokenInsertion(3, layer_tokens(1, tower.width))
    feature, _ = reference_vision(tiny, images, 3, last.tokens)
    assert (tower(images, insertion=last).features - feature).abs().max() <= 1e-5
    tokens = layer_tokens(2, tower.width)
    plain = tower(images, insertion=TokenInsertion(2, tokens)).features
    mixed = tower(images, insertion=TokenInsertion(2, tokens, beta=1.0 - 1e-12)).features
    assert (plain - mixed).abs().max() <= 1e-5
    assert (plain - tower(images, insertion=TokenInsertion(2, tokens, beta=0.5)).features
            ).abs().max() > 1e-4


def test_insertion_errors_name_the_problem(tiny):
    tower = TextTower(tiny)
    ids = tokenize(SENTENCES)
    embeds, eot = tiny.token_embedding(ids), ids.argmax(-1)
    cases = [
        (TokenInsertion(4, layer_tokens(1, 64)), "has 4 blocks"),
        (TokenInsertion(2, layer_tokens(3, 64)), "runs past"),
        (TokenInsertion(0, layer_tokens(1, 32)), r"must be \(3, 64\)"),
        (TokenInsertion(0, layer_tokens(2, 64), beta=1.5), r"beta must be in \[0, 1\]"),
        (TokenInsertion(0, []), "needs the tokens"),
    ]
    for insertion, message in cases:
        with pytest.raises(ValueError, match=message):
            tower.encode_embeddings(embeds, eot, insertion=insertion)
