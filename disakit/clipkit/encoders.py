"""CLIP's two towers, re-run in our own loop so that prompts can be injected.

We never vendor or edit CLIP. :class:`TextTower` and :class:`VisionTower` hold *references* to
the stock ``clip.model.CLIP`` submodules (so frozen and prompted passes share one set of
weights) and re-implement only the forward loop, block by block. That loop is the single
place where every method's prompts enter CLIP:

* text: prompt embeddings come in as the input sequence (CoOp-style context, layer 0); deep
  prompts overwrite positions ``1 .. 1+n`` before layers ``1 .. J-1`` (MaPLe / IVLP / PromptSRC /
  DiSa); a :class:`TokenOverwrite` writes per-sequence (per-class) tokens over given positions at
  the input of one given layer (TCP's class-aware tokens);
* vision: prompts are appended after the positional embedding (``"append"``, MaPLe family and
  VPT) or inserted after ``ln_pre`` between CLS and the patches (``"after_cls"``, DAPT); deep
  prompts overwrite the same slots before later layers;
* both towers: a :class:`TokenInsertion` grows the sequence mid-network, inserting K tokens
  after CLS / the start-of-text token at the input of one block and refreshing them at later
  blocks, plainly or mixed with the previous block's output (MMRL, MMRL++; text: the causal
  mask covers the new width and the EOT index shifts by K);
* both towers: a :class:`SideStream` carries tokens *alongside* the sequence through every
  block, each block run by the stream's own block function (an attention that treats them
  differently from the sequence: DPL's decoupled attention, :mod:`clipkit.decoupled`), with the
  stream's per-layer update between blocks.

Both towers expose their stages, as open_clip's towers do, so that no method needs to reach into
the stock modules: the vision tower ``embed`` (patches + CLS + positions) -> ``place_prompts``
(``ln_pre`` and the layer-0 prompts) -> ``run_blocks`` -> ``project_cls`` (pool); the text tower
``embed`` (token ids) -> ``encode_embeddings`` (positions, ``run_blocks``, ``project`` at EOT).
``blocks`` are the stock residual attention blocks, ``num_layers`` and ``num_heads`` their count
and heads. Both towers' ``run_blocks`` run the one block loop of the codebase (``_block_loop``).

Two exact speed-ups live here as well:

* attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` with
  ``is_causal`` for text (no 77x77 additive mask), batch-first;
* the text tower runs only up to the longest EOT position of the batch. Attention is causal and
  the feature is read at EOT, so later positions cannot change it (docs/methods/README.md).

And one memory saving, off by default: with ``set_grad_checkpointing(True)`` each block step
runs under :func:`torch.utils.checkpoint.checkpoint` (non-reentrant) while gradients are
recorded, so a block's activations are recomputed in the backward pass instead of stored. The
recomputation runs the same operations on the same inputs, so the loss and the gradients are
the same (config key ``MODEL.GRAD_CHECKPOINTING``).

Typing note: the stock ``clip`` modules (``CLIP``, ``VisionTransformer``,
``ResidualAttentionBlock``) are read by attribute name. ``nn.Module.__getattr__`` types every such
read ``Tensor | Module``, which is wrong for them, so a stock module is typed ``Any`` where it is
read, and the towers annotate the attributes they keep.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

VisualPromptPosition = Literal["append", "after_cls"]
VISUAL_PROMPT_POSITIONS: tuple[str, ...] = ("append", "after_cls")


def block_forward(block: nn.Module, x: Tensor, causal: bool = False,
                  key_padding_mask: Optional[Tensor] = None) -> Tensor:
    """Run one stock ``ResidualAttentionBlock`` on a batch-first sequence ``x`` (N, L, D).

    Equivalent to ``block(x.transpose(0, 1))`` with the block's own mask, but batch-first, any
    length ``L`` (the stored 77x77 text mask is replaced by ``is_causal``) and using fused SDPA.
    ``key_padding_mask`` (N, L) bool, True = ignore, is accepted for towers that need it.
    """
    stock: Any = block  # a stock ResidualAttentionBlock (module docstring, typing note)
    attn: nn.MultiheadAttention = stock.attn
    y = stock.ln_1(x)
    n, length, dim = y.shape
    heads = attn.num_heads
    q, k, v = F.linear(y, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(n, length, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
    mask = None
    if key_padding_mask is not None:
        mask = ~key_padding_mask[:, None, None, :]
        if causal:
            mask = mask & torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        causal = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    out = out.transpose(1, 2).reshape(n, length, dim)
    x = x + attn.out_proj(out)
    return x + stock.mlp(stock.ln_2(x))


def block_heads(block: nn.Module) -> int:
    """Attention heads of a stock ``ResidualAttentionBlock``."""
    stock: Any = block  # module docstring, typing note
    return int(stock.attn.num_heads)


def _check_deep_prompts(deep: Sequence[Optional[Tensor]], n_layers: int, tower: str) -> None:
    if len(deep) > n_layers - 1:
        raise ValueError(
            f"{tower} tower has {n_layers} layers, so at most {n_layers - 1} deep prompts "
            f"(layers 1..{n_layers - 1}) can be injected, got {len(deep)}; lower the prompt depth"
        )


def _check_token_shape(tokens: Tensor, n_seq: int, width: int, what: str, where: str) -> None:
    """Tokens for a slot are (N, n, width), one row per sequence, or (n, width) for all."""
    if tokens.dim() not in (2, 3) or tokens.shape[-1] != width:
        raise ValueError(f"{what} must be (N, n, {width}) or (n, {width}) in {where}, got "
                         f"{tuple(tokens.shape)}")
    if tokens.dim() == 3 and tokens.shape[0] != n_seq:
        raise ValueError(f"{what} hold {tokens.shape[0]} sequences, the pass {n_seq}")


@dataclass
class TokenOverwrite:
    """Per-sequence tokens that replace positions ``start .. start+n`` at the input of block
    ``layer`` (0-based; 0 is the embedded input, positional embedding included).

    ``tokens`` is (N, n, D), one row of ``n`` tokens per sequence (per class: TCP's class-aware
    tokens), or (n, D) for all sequences. The positions are those of the sequence entering that
    block, after truncation (see the module docstring); the overwrite replaces the hidden states
    there entirely, and the blocks from ``layer`` on carry the result on (it is not re-applied).
    """

    layer: int
    tokens: Tensor
    start: int = 1

    def check(self, n_layers: int, n_seq: int, length: int, width: int) -> None:
        """Fail with a clear message when the overwrite cannot apply to this pass."""
        tokens = self.tokens
        if not 0 <= self.layer < n_layers:
            raise ValueError(f"token overwrite at layer {self.layer}, but the text tower has "
                             f"{n_layers} layers (0..{n_layers - 1})")
        _check_token_shape(tokens, n_seq, width, "overwrite tokens", "the text tower")
        end = self.start + tokens.shape[-2]
        if self.start < 0 or end > length:
            raise ValueError(f"overwrite positions {self.start}..{end - 1} lie outside the "
                             f"{length} positions of the pass (truncated at the last EOT)")


@dataclass
class TokenInsertion:
    """A slot that grows the sequence mid-network by K tokens and refreshes them per block.

    At the input of block ``layer`` (0-based), ``tokens[0]`` ((K, D), or (N, K, D) per sequence)
    is *inserted* at position ``at`` (1: right after CLS / the start-of-text token), so the
    sequence grows from L to L + K; the text tower's causal mask covers the new width and its EOT
    index shifts by K. At the input of block ``layer + i`` (i >= 1), ``tokens[i]`` overwrites
    those K positions: with ``beta`` 1.0 plainly (MMRL), otherwise as
    ``beta * tokens[i] + (1 - beta) * x`` with ``x`` the previous block's output there (MMRL++).
    A None entry, and every block past the list, carries the K positions on unchanged. The
    inserted tokens get no positional embedding. Positions of other slots (deep prompts, token
    overwrites) are those of the sequence entering that block, so after the insertion they
    count the K tokens.
    """

    layer: int
    tokens: Sequence[Optional[Tensor]]
    beta: float = 1.0
    at: int = 1

    @property
    def n_tokens(self) -> int:
        """K, the number of inserted positions."""
        first = self.tokens[0] if self.tokens else None
        if first is None:
            raise ValueError("a token insertion needs the tokens to insert (tokens[0])")
        return first.shape[-2]

    def check(self, n_layers: int, width: int, tower: str) -> None:
        """Fail with a clear message when the insertion cannot apply to this tower."""
        if not self.tokens or self.tokens[0] is None:
            raise ValueError("a token insertion needs the tokens to insert (tokens[0])")
        if not 0 <= self.layer < n_layers:
            raise ValueError(f"token insertion at block {self.layer}, but the {tower} tower has "
                             f"{n_layers} blocks (0..{n_layers - 1})")
        if self.layer + len(self.tokens) > n_layers:
            raise ValueError(f"token insertion at block {self.layer} with {len(self.tokens)} "
                             f"token sets runs past the {tower} tower's {n_layers} blocks")
        for i, tokens in enumerate(self.tokens):
            if tokens is not None and (tokens.dim() not in (2, 3) or tokens.shape[-1] != width
                                       or tokens.shape[-2] != self.n_tokens):
                raise ValueError(f"insertion tokens[{i}] must be ({self.n_tokens}, {width}) or "
                                 f"(N, {self.n_tokens}, {width}), got {tuple(tokens.shape)}")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"insertion mixing beta must be in [0, 1], got {self.beta}")
        if self.at < 1:
            raise ValueError(f"insertion position must be >= 1 (after CLS / SOT), got {self.at}")

    def apply(self, x: Tensor, block: int) -> Tensor:
        """``x`` (N, L, D) as it enters block ``block``: grown, overwritten, mixed or unchanged."""
        step = block - self.layer
        tokens = self.tokens[step] if 0 <= step < len(self.tokens) else None
        if tokens is None:
            return x
        new = _batched(tokens, x)
        at, k = self.at, new.shape[1]
        if step == 0:
            return torch.cat([x[:, :at], new, x[:, at:]], dim=1)
        if self.beta != 1.0:
            new = self.beta * new + (1.0 - self.beta) * x[:, at:at + k]
        return torch.cat([x[:, :at], new, x[:, at + k:]], dim=1)


class SideBlockFn(Protocol):
    """A replacement for :func:`block_forward` that also runs a :class:`SideStream`'s tokens."""

    def __call__(self, layer: int, block: nn.Module, x: Tensor, side: Tensor, causal: bool,
                 eot: Optional[Tensor], side_out: bool) -> tuple[Tensor, Optional[Tensor]]: ...


@dataclass
class SideStream:
    """Tokens carried *alongside* the sequence through every block, by their own block function.

    Why: an attention that treats extra tokens differently from the sequence's own (DPL's
    decoupled attention: the sequence keeps CLIP's frozen attention among itself and reads the
    extra tokens through a gate, while those read the sequence) cannot be written as tokens
    placed into the sequence (the slots above); each block itself must run differently. So the
    tower's one block loop, rather than a copy of it, carries the side tokens: at block ``i`` it
    hands ``(x, side)`` to ``block_fn`` instead of :func:`block_forward`, and between blocks
    ``update`` turns block ``i``'s side output into block ``i + 1``'s side input (per-layer
    learned state). The other slots (deep prompts, overwrite, insertion) still apply to ``x``
    before each block, and gradient checkpointing covers the side stream's block steps too.

    ``tokens``: the side tokens entering block 0, (m, D) for every sequence or (N, m, D).
    ``block_fn(layer, block, x, side, causal, eot, side_out)`` returns the new ``(x, side)``:
    ``x`` (N, L, D) the sequence entering that block, ``side`` (N, m, D), ``causal`` True in the
    text tower, ``eot`` the text tower's (N,) end-of-text positions in ``x`` (shifted by K after
    a :class:`TokenInsertion`; None in the vision tower), ``side_out`` False at the last block,
    whose side output nobody reads (``block_fn`` may skip it and return None).
    ``update(side, layer)``: the side tokens entering block ``layer`` (>= 1) from the previous
    block's side output. The side tokens never join the sequence: positions, the EOT index and
    the tower's output are those of ``x`` alone.
    """

    tokens: Tensor
    block_fn: SideBlockFn
    update: Callable[[Tensor, int], Tensor]

    def check(self, n_seq: int, width: int, tower: str) -> None:
        """Fail with a clear message when the side tokens cannot run in this tower."""
        _check_token_shape(self.tokens, n_seq, width, "side-stream tokens", f"the {tower} tower")


def _block_loop(blocks: nn.Sequential, x: Tensor, *, causal: bool,
                deep_prompts: Sequence[Optional[Tensor]], prompt_start: int,
                token_overwrite: Optional[TokenOverwrite], insertion: Optional[TokenInsertion],
                side_stream: Optional[SideStream], eot: Optional[Tensor],
                checkpointing: bool) -> Tensor:
    """The one block loop of the codebase (both towers' ``run_blocks``), slots in this order at
    the input of block ``i``: deep prompt ``i - 1``, token overwrite, insertion; then the block
    (or the side stream's block function), checkpointed when ``checkpointing`` and gradients
    are recorded. Returns the last block's output states (N, L', D)."""
    recompute = checkpointing and torch.is_grad_enabled()
    side = None if side_stream is None else _batched(side_stream.tokens, x)
    last = len(blocks) - 1
    for i, block in enumerate(blocks):
        if 1 <= i <= len(deep_prompts):
            deep = deep_prompts[i - 1]
            if deep is not None:
                x = _overwrite_slots(x, deep, prompt_start)
        if token_overwrite is not None and i == token_overwrite.layer:
            x = _overwrite_slots(x, token_overwrite.tokens, token_overwrite.start)
        if insertion is not None:
            x = insertion.apply(x, i)  # text: causal attention covers the grown width
        if side_stream is None or side is None:
            x = _run(recompute, block_forward, block, x, causal)
            continue
        shifted = eot
        if eot is not None and insertion is not None and i >= insertion.layer:
            shifted = eot + insertion.n_tokens
        x, out = _run(recompute, side_stream.block_fn, i, block, x, side, causal, shifted,
                      i < last)
        if i < last:
            if out is None:
                raise ValueError(f"the side stream's block function returned no side tokens "
                                 f"at block {i}, but block {i + 1} needs them")
            side = side_stream.update(out, i + 1)
    return x


def _run(recompute: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, or the same under non-reentrant activation checkpointing: the forward
    result is the same, and the backward pass recomputes ``fn`` instead of reading stored
    activations (same operations on the same inputs, so the same gradients)."""
    if recompute:
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class TextTower(nn.Module):
    """CLIP's text encoder with a prompt-embedding entry point (``encode_embeddings``).

    A prompt learner only produces token embeddings; it never copies a ``TextEncoder``.
    Stages: :meth:`embed` (token ids -> embeddings), :meth:`encode_embeddings` (truncation and
    positions, then :meth:`run_blocks`, then :meth:`project` at each EOT).
    """

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        stock: Any = clip_model  # a stock clip.model.CLIP (module docstring, typing note)
        self.token_embedding: nn.Embedding = stock.token_embedding
        self.positional_embedding: nn.Parameter = stock.positional_embedding
        self.blocks: nn.Sequential = stock.transformer.resblocks
        self.ln_final: nn.LayerNorm = stock.ln_final
        self.text_projection: nn.Parameter = stock.text_projection
        self.grad_checkpointing = False

    @property
    def dtype(self) -> torch.dtype:
        """Activation dtype: that of the attention weights (fp16 when CLIP was converted)."""
        stock: Any = self.blocks[0]  # module docstring, typing note
        return stock.attn.in_proj_weight.dtype

    @property
    def width(self) -> int:
        return self.ln_final.weight.shape[0]

    @property
    def context_length(self) -> int:
        return self.positional_embedding.shape[0]

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def num_heads(self) -> int:
        """Attention heads per block."""
        return block_heads(self.blocks[0])

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them
        (module docstring): less memory for about one more forward pass, same gradients."""
        self.grad_checkpointing = bool(enabled)

    def embed(self, tokens: Tensor) -> Tensor:
        """Token ids (N, L) -> token embeddings (N, L, D) in the activation dtype."""
        return self.token_embedding(tokens).to(self.dtype)

    def encode_embeddings(
        self,
        embeds: Tensor,
        eot: Tensor,
        deep_prompts: Sequence[Optional[Tensor]] = (),
        prompt_start: int = 1,
        truncate: bool = True,
        token_overwrite: Optional[TokenOverwrite] = None,
        insertion: Optional[TokenInsertion] = None,
        side_stream: Optional[SideStream] = None,
    ) -> Tensor:
        """Encode prompt embeddings (N, L, D) into projected text features (N, E).

        Args:
            embeds: input embeddings, positional embedding NOT yet added. ``L`` may already be
                shorter than the context length.
            eot: (N,) index of each sequence's end-of-text token.
            deep_prompts: entry ``i`` (a (n, D) or (N, n, D) tensor, or None) overwrites
                positions ``prompt_start .. prompt_start+n`` before layer ``i + 1``.
            truncate: run only positions ``0 .. max(eot)`` (exact; see module docstring).
            token_overwrite: per-sequence tokens written over given positions at the input of
                one layer (:class:`TokenOverwrite`); at a layer that also has a deep prompt,
                the deep prompt is written first.
            insertion: K tokens inserted after the start-of-text token at the input of one
                block and refreshed at later blocks (:class:`TokenInsertion`); the feature is
                then read at ``eot + K``. Applied after the deep prompt and overwrite slots.
            side_stream: tokens carried alongside the sequence, every block run by their own
                block function (:class:`SideStream`, e.g. DPL's decoupled attention).
        """
        if truncate:
            embeds = embeds[:, : int(eot.max()) + 1]
        length = embeds.shape[1]
        x = embeds.to(self.dtype) + self.positional_embedding[:length].to(self.dtype)
        x = self.run_blocks(x, eot, deep_prompts, prompt_start, token_overwrite, insertion,
                            side_stream)
        return self.project(x, eot if insertion is None else eot + insertion.n_tokens)

    def run_blocks(
        self,
        x: Tensor,
        eot: Tensor,
        deep_prompts: Sequence[Optional[Tensor]] = (),
        prompt_start: int = 1,
        token_overwrite: Optional[TokenOverwrite] = None,
        insertion: Optional[TokenInsertion] = None,
        side_stream: Optional[SideStream] = None,
    ) -> Tensor:
        """The blocks on ``x`` (N, L, D, positional embedding added; causal attention) with the
        slots of :meth:`encode_embeddings`; returns the last block's states (N, L (+K), D)."""
        _check_deep_prompts(deep_prompts, self.num_layers, "text")
        if insertion is not None:
            insertion.check(self.num_layers, self.width, "text")
        if token_overwrite is not None:
            token_overwrite.check(self.num_layers, x.shape[0], x.shape[1], self.width)
        if side_stream is not None:
            side_stream.check(x.shape[0], self.width, "text")
        return _block_loop(self.blocks, x, causal=True, deep_prompts=deep_prompts,
                           prompt_start=prompt_start, token_overwrite=token_overwrite,
                           insertion=insertion, side_stream=side_stream, eot=eot,
                           checkpointing=self.grad_checkpointing)

    def project(self, x: Tensor, eot: Tensor) -> Tensor:
        """Final LayerNorm at each sequence's EOT position, then the text projection."""
        x = self.ln_final(x[torch.arange(x.shape[0], device=x.device), eot])
        return x @ self.text_projection.to(x.dtype)

    def encode_tokens(self, tokens: Tensor, truncate: bool = True) -> Tensor:
        """Plain (unprompted) encoding of token ids, equal to ``clip_model.encode_text``."""
        return self.encode_embeddings(self.embed(tokens), tokens.argmax(dim=-1), truncate=truncate)


def _overwrite_slots(x: Tensor, prompt: Tensor, start: int) -> Tensor:
    """Return ``x`` with ``x[:, start:start+n]`` replaced by ``prompt`` (broadcast over N).

    Built by concatenation rather than in-place assignment so autograd sees a clean graph.
    """
    prompt = prompt.to(x.dtype)
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(x.shape[0], -1, -1)
    n = prompt.shape[1]
    end = x.shape[1] if start < 0 and start + n == 0 else start + n
    return torch.cat([x[:, :start], prompt, x[:, end:]], dim=1)


@dataclass
class VisionOutput:
    """Vision tower result: projected CLS feature, and optionally the final token states."""

    features: Tensor
    tokens: Optional[Tensor] = None  # (N, L, width), last block's output, before ln_post


class VisionTower(nn.Module):
    """CLIP's ViT image encoder with visual-prompt slots (see module docstring).

    Stages (a ViT's; ``forward`` composes them): :meth:`embed` (patches, CLS, positions),
    :meth:`place_prompts` (``ln_pre`` and the layer-0 prompts), :meth:`run_blocks`,
    :meth:`project_cls` (the pool: ``ln_post`` of CLS and the projection).
    ResNet backbones have no token sequence; they are supported for unprompted encoding only.
    """

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        stock: Any = clip_model  # a stock clip.model.CLIP (module docstring, typing note)
        # The stock VisionTransformer (or ModifiedResNet), its parts read by name: typed Any.
        self.visual: Any = stock.visual
        self.is_vit = hasattr(self.visual, "transformer")
        self.grad_checkpointing = False

    @property
    def dtype(self) -> torch.dtype:
        return self.visual.conv1.weight.dtype

    @property
    def blocks(self) -> nn.Sequential:
        """The stock ViT's residual attention blocks (``visual.transformer.resblocks``)."""
        if not self.is_vit:
            raise ValueError("a ResNet backbone has no transformer blocks; token-level prompts "
                             "need a ViT backbone (e.g. ViT-B/16)")
        return self.visual.transformer.resblocks

    @property
    def num_layers(self) -> int:
        """Transformer blocks (0 for a ResNet)."""
        return len(self.blocks) if self.is_vit else 0

    @property
    def num_heads(self) -> int:
        """Attention heads per block (0 for a ResNet)."""
        return block_heads(self.blocks[0]) if self.is_vit else 0

    @property
    def width(self) -> int:
        return self.visual.conv1.weight.shape[0]

    @property
    def grid_size(self) -> int:
        return round((self.visual.positional_embedding.shape[0] - 1) ** 0.5)

    @property
    def patch_size(self) -> int:
        return self.visual.conv1.weight.shape[-1]

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them
        (module docstring): less memory for about one more forward pass, same gradients."""
        self.grad_checkpointing = bool(enabled)

    def forward(
        self,
        images: Tensor,
        prompts: Optional[Tensor] = None,
        deep_prompts: Sequence[Optional[Tensor]] = (),
        position: VisualPromptPosition = "append",
        return_tokens: bool = False,
        insertion: Optional[TokenInsertion] = None,
        side_stream: Optional[SideStream] = None,
    ) -> VisionOutput:
        """Encode images (N, 3, H, W); ``prompts`` (n, width) or (N, n, width) enter layer 0.

        ``insertion`` (:class:`TokenInsertion`) inserts K tokens after CLS at the input of one
        block and refreshes them at later blocks (after any deep-prompt overwrite of that block);
        ``return_tokens`` then includes them at positions ``1 .. K``. ``side_stream``
        (:class:`SideStream`) carries tokens alongside the sequence through every block.
        """
        if not self.is_vit:
            if insertion is not None or side_stream is not None:
                raise ValueError("token insertion and side-stream tokens need a ViT backbone "
                                 "(e.g. ViT-B/16)")
            return self._forward_resnet(images, prompts, deep_prompts, return_tokens)
        if prompts is None and any(p is not None for p in deep_prompts):
            raise ValueError("deep visual prompts need layer-0 prompts (their slots) as well")
        x = self.place_prompts(self.embed(images), prompts, position)
        n_prompt = 0 if prompts is None else prompts.shape[-2]
        start = -n_prompt if position == "append" else 1
        x = self.run_blocks(x, deep_prompts, start, insertion, side_stream)
        return VisionOutput(self.project_cls(x), x if return_tokens else None)

    def embed(self, images: Tensor) -> Tensor:
        """Images (N, 3, H, W) -> conv1 patches + CLS + positional embedding, batch-first
        (N, 1 + grid², width), in the activation dtype (ViT only)."""
        v = self.visual
        x = v.conv1(images.to(self.dtype)).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        return torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)

    def place_prompts(self, x: Tensor, prompts: Optional[Tensor] = None,
                      position: VisualPromptPosition = "append") -> Tensor:
        """``ln_pre`` of the embedded tokens ``x`` with the layer-0 ``prompts`` ((n, width) or
        (N, n, width)) placed: ``"append"`` after the patches, before ``ln_pre`` (MaPLe family,
        VPT); ``"after_cls"`` between CLS and the patches, after ``ln_pre`` (DAPT). Prompts get
        no positional embedding."""
        if position not in VISUAL_PROMPT_POSITIONS:
            raise ValueError(f"visual prompt position must be one of "
                             f"{list(VISUAL_PROMPT_POSITIONS)}, got {position!r}")
        if prompts is not None and position == "append":
            x = torch.cat([x, _batched(prompts, x)], dim=1)
        x = self.visual.ln_pre(x)
        if prompts is not None and position == "after_cls":
            x = torch.cat([x[:, :1], _batched(prompts, x), x[:, 1:]], dim=1)
        return x

    def run_blocks(self, x: Tensor, deep_prompts: Sequence[Optional[Tensor]] = (),
                   prompt_start: int = 1, insertion: Optional[TokenInsertion] = None,
                   side_stream: Optional[SideStream] = None) -> Tensor:
        """The blocks on ``x`` (N, L, width, after :meth:`place_prompts`): entry ``i`` of
        ``deep_prompts`` overwrites the prompt slots (from ``prompt_start``; negative = counted
        from the end) before block ``i + 1``, then the insertion and side-stream slots; returns
        the last block's states (N, L (+K), width), before ``ln_post``."""
        _check_deep_prompts(deep_prompts, self.num_layers, "vision")
        if insertion is not None:
            insertion.check(self.num_layers, self.width, "vision")
        if side_stream is not None:
            side_stream.check(x.shape[0], self.width, "vision")
        return _block_loop(self.blocks, x, causal=False, deep_prompts=deep_prompts,
                           prompt_start=prompt_start, token_overwrite=None, insertion=insertion,
                           side_stream=side_stream, eot=None,
                           checkpointing=self.grad_checkpointing)

    def project_cls(self, tokens: Tensor) -> Tensor:
        """The pool: ``ln_post`` of the CLS token, then the projection (CLIP's image feature)."""
        return self.project_tokens(tokens[:, 0])

    def project_tokens(self, tokens: Tensor) -> Tensor:
        """``ln_post`` + projection applied to any token states (..., width) -> (..., E)."""
        return self.post_norm(tokens) @ self.projection.to(tokens.dtype)

    def post_norm(self, tokens: Tensor) -> Tensor:
        """CLIP's ``ln_post`` on any token states (..., width): the pool's first half, public for
        methods that pool other positions with their own projection (MMRL's ``f_r``)."""
        return self.visual.ln_post(tokens)

    @property
    def projection(self) -> Tensor:
        """CLIP's frozen image projection ``P_v`` (width, E)."""
        return self.visual.proj

    def _forward_resnet(self, images: Tensor, prompts: Optional[Tensor],
                        deep_prompts: Sequence[Optional[Tensor]],
                        return_tokens: bool) -> VisionOutput:
        if prompts is not None or any(p is not None for p in deep_prompts) or return_tokens:
            raise ValueError(
                "visual prompts and token outputs need a ViT backbone (e.g. ViT-B/16); "
                "this ResNet backbone supports unprompted image encoding only"
            )
        return VisionOutput(self.visual(images.to(self.dtype)))


def _batched(prompts: Tensor, x: Tensor) -> Tensor:
    prompts = prompts.to(x.dtype)
    return prompts.unsqueeze(0).expand(x.shape[0], -1, -1) if prompts.dim() == 2 else prompts
