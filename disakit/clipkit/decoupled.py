"""Decoupled attention on the stock CLIP blocks (DPL; docs/methods/dpl.md).

Standard attention over ``[X; P]`` (instances X: text tokens or CLS + patches; prompts P) splits
into four sub-processes by query and key group::

                 keys P     keys X
    query P      P->P       P->I        (prompt rows:   :func:`prompt_attention`)
    query X      I->P       I->I        (instance rows: :func:`instance_attention`)

For an instance row ``a`` the joint softmax is exactly
``(1 - λ_a) A_{a→X} + λ_a A_{a→P}`` with ``λ_a = Z_P(a) / (Z_P(a) + Z_X(a))``.
DPL-R keeps I->I exact (the frozen attention: causal for text, full for vision) and replaces the
data-dependent ``λ_a`` by a learned gate: ``A_{a→X} + tanh(g) · A_{a→P}`` (``i2p="gated"``);
``i2p="joint"`` is the ordinary softmax over ``[X; P]``. Prompt rows attend to ``[X_valid; P]``
(``p2i``/``p2p``); in the text tower ``X_valid`` stops at each sequence's EOT, which keeps the
text-tower truncation exact.

Everything runs on the stock block's own frozen modules (``ln_1``, ``attn.in_proj_*``,
``attn.out_proj``, ``ln_2``, ``mlp``): nothing is copied. Prompts carry no positional embedding.
Tensors are batch-first, ``(N, L, D)``; heads are ``(N, H, L, D/H)``.

This module defines one block's decoupled attention and the learned state; it runs no block
loop. :meth:`DecoupledPrompts.side_stream` hands the prompts to a tower's own loop as a
:class:`~disakit.clipkit.encoders.SideStream` (block function: :func:`decoupled_block_forward`),
so prompts still enter CLIP only through ``clipkit/encoders.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.clipkit.encoders import SideStream, TextTower, VisionTower, block_forward

I2PMode = Literal["gated", "joint"]
P2IMode = Literal["full", "causal", "none"]
P2PMode = Literal["full", "none"]
PromptUpdate = Literal["residual", "replace"]

_CHOICES = {"I2P": ("gated", "joint"), "P2I": ("full", "causal", "none"), "P2P": ("full", "none"),
            "PROMPT_UPDATE": ("residual", "replace")}


def check_choice(key: str, value: str, prefix: str = "") -> None:
    """Validate one of the string options above, naming the config key in the error."""
    if value not in _CHOICES[key]:
        raise ValueError(f"{prefix}{key} must be one of {list(_CHOICES[key])}, got {value!r}")


@dataclass(frozen=True)
class DecoupledAttention:
    """Which sub-processes run and how (docs/methods/dpl.md keys ``I2P``, ``P2I``, ``P2P``).

    ``p2i="causal"`` lets text prompt rows see only the tokens before the prompt slot (SOT),
    which removes the language conditioning; vision has no token order, so there it acts as
    ``full``.
    """

    i2p: I2PMode = "gated"
    p2i: P2IMode = "full"
    p2p: P2PMode = "full"

    def __post_init__(self) -> None:
        self.check()

    def check(self, prefix: str = "") -> None:
        for key, value in (("I2P", self.i2p), ("P2I", self.p2i), ("P2P", self.p2p)):
            check_choice(key, value, prefix)
        if self.p2i == "none" and self.p2p == "none":
            raise ValueError(f"{prefix}P2I none with {prefix}P2P none leaves the prompt rows "
                             "nothing to attend to; set one of them to full")

    @property
    def gated(self) -> bool:
        return self.i2p == "gated"


# ---------------------------------------------------------------------------- head algebra
def split_heads(t: Tensor, heads: int) -> Tensor:
    """(N, L, D) -> (N, H, L, D/H)."""
    n, length, dim = t.shape
    return t.view(n, length, heads, dim // heads).transpose(1, 2)


def merge_heads(t: Tensor) -> Tensor:
    """(N, H, L, D/H) -> (N, L, D)."""
    n, heads, length, dh = t.shape
    return t.transpose(1, 2).reshape(n, length, heads * dh)


def restricted_attention(q: Tensor, k: Tensor, v: Tensor,
                         mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """The read-out ``A_{a→S}`` and log partition sum ``log Z_S(a)`` over one key set S.

    Explicit (not fused) softmax: the reference the fused paths are tested against, and the
    quantities of the identity above. ``mask`` (bool, True = attend) broadcasts to the scores.
    """
    scores = (q.float() @ k.float().transpose(-2, -1)) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    log_z = torch.logsumexp(scores, dim=-1, keepdim=True)
    return (scores - log_z).exp() @ v.float(), log_z


def _causal(rows: int, cols: int, device: torch.device) -> Tensor:
    return torch.ones(rows, cols, dtype=torch.bool, device=device).tril()


def instance_attention(q_x: Tensor, k: Tensor, v: Tensor, n_inst: int,
                       attention: DecoupledAttention, gamma: Optional[Tensor] = None,
                       causal: bool = False) -> Tensor:
    """I->I and I->P for the instance rows; keys/values are ``[X; P]`` with ``n_inst`` X's.

    ``gated``: ``A_{a→X} + γ · A_{a→P}`` with ``gamma`` per head (H,) or shared (1,).
    ``joint``: one softmax over ``[X; P]`` (causal among X for text; every prompt visible).
    """
    if attention.i2p == "joint":
        mask = None
        if causal:
            m = k.shape[-2] - n_inst
            mask = torch.cat([_causal(n_inst, n_inst, k.device),
                              torch.ones(n_inst, m, dtype=torch.bool, device=k.device)], dim=1)
        return F.scaled_dot_product_attention(q_x, k, v, attn_mask=mask)
    if gamma is None:
        raise ValueError("gated I->P attention needs the gate values (gamma)")
    a_x = F.scaled_dot_product_attention(q_x, k[:, :, :n_inst], v[:, :, :n_inst], is_causal=causal)
    a_p = F.scaled_dot_product_attention(q_x, k[:, :, n_inst:], v[:, :, n_inst:])
    return a_x + gamma.to(a_p.dtype).view(1, -1, 1, 1) * a_p


def prompt_key_mask(n_inst: int, n_prompt: int, attention: DecoupledAttention, device: torch.device,
                    causal: bool = False, eot: Optional[Tensor] = None) -> Optional[Tensor]:
    """Keys ``[X; P]`` the prompt rows may see: (N or 1, 1, 1, n_inst + n_prompt), or None = all.

    Text (``causal``): ``full`` = positions ``0..eot`` of each sequence (never the padding after
    EOT), ``causal`` = SOT only. ``none`` hides X; ``p2p="none"`` hides P.
    """
    pos = torch.arange(n_inst, device=device)
    if attention.p2i == "none":
        x_ok = torch.zeros(1, n_inst, dtype=torch.bool, device=device)
    elif causal and attention.p2i == "causal":
        x_ok = (pos == 0).unsqueeze(0)
    elif causal and eot is not None:
        x_ok = pos.unsqueeze(0) <= eot.to(device).unsqueeze(1)
    else:
        x_ok = torch.ones(1, n_inst, dtype=torch.bool, device=device)
    p_ok = torch.full((x_ok.shape[0], n_prompt), attention.p2p == "full", device=device)
    mask = torch.cat([x_ok, p_ok], dim=1)
    return None if bool(mask.all()) else mask[:, None, None, :]


def prompt_attention(q_p: Tensor, k: Tensor, v: Tensor, n_inst: int,
                     attention: DecoupledAttention, causal: bool = False,
                     eot: Optional[Tensor] = None) -> Tensor:
    """P->I and P->P for the prompt rows: one softmax over the visible keys of ``[X; P]``."""
    mask = prompt_key_mask(n_inst, k.shape[-2] - n_inst, attention, k.device, causal, eot)
    return F.scaled_dot_product_attention(q_p, k, v, attn_mask=mask)


# ---------------------------------------------------------------------------- one block
def decoupled_attention(attn: nn.MultiheadAttention, y: Tensor, n_inst: int,
                        attention: DecoupledAttention, gamma: Optional[Tensor] = None,
                        causal: bool = False, eot: Optional[Tensor] = None,
                        prompt_rows: bool = True) -> Tensor:
    """The attention sub-layer on ``y = ln_1([X; P])`` with the stock ``attn``'s frozen weights.

    Returns the ``out_proj`` output of the rows ``[X; P]`` (or of X only, when ``prompt_rows`` is
    False: the prompt outputs of the last layer are never read).
    """
    heads = attn.num_heads
    q, k, v = (split_heads(t, heads)
               for t in F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1))
    out = instance_attention(q[:, :, :n_inst], k, v, n_inst, attention, gamma, causal)
    if prompt_rows:
        out = torch.cat([out, prompt_attention(q[:, :, n_inst:], k, v, n_inst, attention,
                                               causal, eot)], dim=2)
    return attn.out_proj(merge_heads(out))


def decoupled_block_forward(block: nn.Module, x: Tensor, p: Optional[Tensor],
                            attention: DecoupledAttention, gamma: Optional[Tensor] = None,
                            causal: bool = False, eot: Optional[Tensor] = None,
                            prompt_out: bool = True) -> tuple[Tensor, Optional[Tensor]]:
    """One stock ``ResidualAttentionBlock`` on instances ``x`` (N, L, D) and prompts ``p``
    (N, m, D); returns the new ``(x, p)`` (``p`` None when ``prompt_out`` is False).

    With no prompts (``p`` None or m = 0) this is exactly :func:`block_forward`.
    """
    if p is None or p.shape[1] == 0:
        return block_forward(block, x, causal=causal), p
    stock: Any = block  # a stock ResidualAttentionBlock (clipkit.encoders, typing note)
    n_inst = x.shape[1]
    h = torch.cat([x, p.to(x.dtype)], dim=1)
    rows = h if prompt_out else x
    rows = rows + decoupled_attention(stock.attn, stock.ln_1(h), n_inst, attention, gamma,
                                      causal, eot, prompt_out)
    rows = rows + stock.mlp(stock.ln_2(rows))
    return rows[:, :n_inst], (rows[:, n_inst:] if prompt_out else None)


# ---------------------------------------------------------------------------- learnable state
class DecoupledPrompts(nn.Module):
    """One tower's learned DPL state: per-layer prompt inputs ``delta`` (J, m, D) and the I->P
    gates ``gate`` (layers, heads or 1), plus how prompts move between layers.

    ``residual``: ``P_{ℓ+1} = P_ℓ^out + Δ_{ℓ+1}`` for ``ℓ+1 < J`` (Δ_{≥1} start at 0, so
    training starts from ``P_ℓ^out``); ``replace``: ``P_{ℓ+1} = Δ_{ℓ+1}`` (IVLP-like,
    Δ ~ N(0, std²)).
    Layers ``≥ J`` carry ``P_ℓ^out`` on. No gate exists with ``i2p="joint"`` (nothing unused is
    learned or saved).
    """

    def __init__(self, n_tokens: int, width: int, depth: int, n_layers: int, n_heads: int,
                 attention: DecoupledAttention = DecoupledAttention(),
                 update: PromptUpdate = "residual", gate_init: float = 0.0,
                 gate_per_head: bool = True, std: float = 0.02) -> None:
        super().__init__()
        check_choice("PROMPT_UPDATE", update)
        if not 1 <= depth <= n_layers or n_tokens < 1:
            raise ValueError(f"decoupled prompts need 1 <= depth <= {n_layers} layers and at "
                             f"least one token, got depth {depth} and {n_tokens} tokens")
        delta = torch.zeros(depth, n_tokens, width)
        if update == "residual":
            delta[0].normal_(0.0, std)
        else:
            delta.normal_(0.0, std)
        self.delta = nn.Parameter(delta)
        gates = torch.full((n_layers, n_heads if gate_per_head else 1), float(gate_init))
        self.gate = nn.Parameter(gates) if attention.gated else None
        self.attention, self.update, self.n_layers = attention, update, n_layers

    def gammas(self) -> list[Optional[Tensor]]:
        """``tanh(g)`` per layer ((heads,) or (1,)); None per layer with joint I->P."""
        if self.gate is None:
            return [None] * self.n_layers
        return list(torch.tanh(self.gate).unbind(0))

    def next_prompts(self, p_out: Tensor, layer: int) -> Tensor:
        """The prompt state entering ``layer`` (≥ 1) from the previous layer's output."""
        if layer >= self.delta.shape[0]:
            return p_out
        delta = self.delta[layer].to(p_out.dtype)
        return p_out + delta if self.update == "residual" else delta.expand_as(p_out)

    def side_stream(self) -> SideStream:
        """These prompts as a tower's side stream (:class:`~clipkit.encoders.SideStream`):
        ``Δ_0`` enters block 0, each block runs :func:`decoupled_block_forward` with its own
        gate, and :meth:`next_prompts` moves the prompts between blocks. The tower's own block
        loop carries them, so slots, checkpointing and truncation are the tower's."""
        gammas, attention = self.gammas(), self.attention

        def block_fn(layer: int, block: nn.Module, x: Tensor, side: Tensor, causal: bool,
                     eot: Optional[Tensor], side_out: bool) -> tuple[Tensor, Optional[Tensor]]:
            return decoupled_block_forward(block, x, side, attention, gammas[layer], causal, eot,
                                           prompt_out=side_out)

        return SideStream(self.delta[0], block_fn, self.next_prompts)


# ---------------------------------------------------------------------------- the two towers
def encode_text_decoupled(tower: TextTower, tokens: Tensor, prompts: DecoupledPrompts,
                          truncate: bool = True) -> Tensor:
    """Projected text features (N, E) of token ids (N, L): instances are the sentence tokens at
    their own positions, prompts join every layer (no positional embedding).

    Truncation to the longest EOT is exact: X rows are causal, prompt rows never see keys after
    their own sequence's EOT (text-tower truncation stays exact).
    """
    return tower.encode_embeddings(tower.embed(tokens), tokens.argmax(dim=-1), truncate=truncate,
                                   side_stream=prompts.side_stream())


def encode_image_decoupled(tower: VisionTower, images: Tensor,
                           prompts: DecoupledPrompts) -> Tensor:
    """Projected image features (N, E): instances are CLS + patches after ``ln_pre``."""
    if not tower.is_vit:
        raise ValueError("decoupled visual prompts need a ViT backbone (e.g. ViT-B/16); use "
                         "TRAINER.DPL.MODALITY text with a ResNet backbone")
    return tower(images, side_stream=prompts.side_stream()).features
