"""CoOp-style prompt assembly: learnable context tokens around fixed class-name tokens.

Every text-prompting method (CoOp, CoCoOp, KgCoOp, MaPLe, IVLP, PromptSRC, DAPT, DiSa) builds its
layer-0 text prompts with :class:`PromptContext`: a learnable ``ctx`` and, per class, the frozen
token embeddings before it (``token_prefix``: SOT) and after it (``token_suffix``: the rest of the
init phrase, the class name, ".", EOT). The fixed buffers depend on the class names, so they are
*non-persistent*: they never reach a checkpoint, and :meth:`PromptContext.set_classnames` rebuilds
them for new classes (base -> new, cross-dataset). They are stored already truncated to the
longest EOT position (docs/methods/README.md), which saves memory and text-tower compute.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from disakit.clipkit.compat import clip

ClassTokenPosition = Literal["end", "middle", "front"]
InitPolicy = Literal["words", "first_n"]
Embedder = Callable[[Tensor], Tensor]


def clean_classname(name: str) -> str:
    """Class names reach prompts with ``_`` replaced by spaces (``apple_pie`` -> ``apple pie``)."""
    return name.replace("_", " ")


def tokenize(texts: Sequence[str]) -> Tensor:
    """Tokenize to (N, 77) ids with a clear error for sentences longer than CLIP's context."""
    try:
        return clip.tokenize(list(texts))
    except RuntimeError as err:
        raise ValueError(
            f"a prompt is longer than CLIP's 77-token context ({err}); shorten the class name "
            "or the template/context phrase"
        ) from err


def bpe_length(text: str) -> int:
    """Number of BPE tokens of ``text`` (without SOT/EOT)."""
    return int(tokenize([text])[0].argmax()) - 1


@dataclass
class ContextInit:
    """Initial context vectors and the text that stands for them in the tokenized prompt."""

    vectors: Tensor
    prefix_text: str

    @property
    def n_ctx(self) -> int:
        return self.vectors.shape[-2]


def init_context(embed: Embedder, width: int, n_ctx: int, ctx_init: str = "",
                 policy: InitPolicy = "words", n_cls: Optional[int] = None,
                 std: float = 0.02) -> ContextInit:
    """Initialise learnable context as the methods' reference code does (docs/methods/README.md).

    ``policy="words"`` (CoOp/CoCoOp/KgCoOp): a non-empty phrase sets ``n_ctx`` to its word count.
    ``policy="first_n"`` (MaPLe/IVLP/PromptSRC/DiSa): the phrase is used only when
    ``n_ctx <= 4``, taking its first ``n_ctx`` token embeddings; the whole phrase stays in the
    prompt text, so its remaining words become part of the fixed suffix. ``n_cls`` gives
    class-specific (CSC) random contexts.
    """
    phrase = clean_classname(ctx_init.strip())
    use_phrase = bool(phrase) and (policy == "words" or n_ctx <= 4)
    if use_phrase:
        n = len(phrase.split(" ")) if policy == "words" else n_ctx
        with torch.no_grad():
            emb = embed(tokenize([phrase]))[0].float()
        if 1 + n > int(tokenize([phrase])[0].argmax()):
            raise ValueError(f"CTX_INIT {ctx_init!r} has fewer tokens than the {n} context tokens")
        return ContextInit(emb[1:1 + n].clone(), phrase)
    shape = (n_ctx, width) if n_cls is None else (n_cls, n_ctx, width)
    return ContextInit(torch.empty(shape).normal_(0.0, std), " ".join(["X"] * n_ctx))


def check_context_template(template: str, n_ctx: int) -> None:
    """A template holds one ``{}`` and at least ``n_ctx`` tokens before it (which the context
    replaces), so that the context never overwrites the class name."""
    if template.count("{}") != 1:
        raise ValueError(f"prompt template {template!r} must contain '{{}}' (the class name) "
                         "exactly once")
    before = template.split("{}")[0].strip()
    if bpe_length(before) < n_ctx:
        raise ValueError(f"prompt template {template!r} has {bpe_length(before)} tokens before "
                         f"the class name, fewer than the {n_ctx} context tokens that replace "
                         "them; start it with that many words, e.g. 'X X X X {}.'")


class PromptContext(nn.Module):
    """Learnable context + class-dependent fixed token buffers -> prompt embeddings.

    ``forward()`` returns ``(embeds, eot)`` with embeds (C, L*, D) ready for
    :meth:`clipkit.encoders.TextTower.encode_embeddings`. An optional per-image ``shift`` (B, D)
    (CoCoOp's meta-net output) gives (B, C, L*, D).

    ``template`` (TCP): each class prompt is ``template.format(name)`` instead of
    ``"<prefix text> <name>."``, and the context replaces the tokens at positions
    ``1 .. n_ctx`` of that sentence, whatever they are (e.g. "X X X X" or "a photo of a").
    """

    # Non-persistent buffers, (re)built by set_classnames.
    token_prefix: Tensor
    token_suffix: Tensor
    eot: Tensor
    tokens: Tensor

    def __init__(self, init: ContextInit, position: ClassTokenPosition = "end",
                 template: Optional[str] = None) -> None:
        super().__init__()
        if position not in ("end", "middle", "front"):
            raise ValueError(f"class token position must be end/middle/front, got {position!r}")
        if template is not None:
            check_context_template(template, init.n_ctx)
            if position != "end":
                raise ValueError("a prompt template fixes the class position; use position 'end'")
        self.ctx = nn.Parameter(init.vectors)
        self.prefix_text = init.prefix_text
        self.template = template
        self.position = position
        self.classnames: list[str] = []

    @property
    def n_ctx(self) -> int:
        return self.ctx.shape[-2]

    @property
    def class_specific(self) -> bool:
        return self.ctx.dim() == 3

    def set_classnames(self, classnames: Sequence[str], embed: Embedder) -> None:
        """(Re)build the fixed token buffers for ``classnames`` using CLIP's token embedding."""
        names = [clean_classname(c) for c in classnames]
        if self.class_specific and len(names) != self.ctx.shape[0]:
            raise ValueError(
                f"class-specific context (CSC) was learned for {self.ctx.shape[0]} classes and "
                f"cannot be used for {len(names)} classes; train with CSC False to transfer"
            )
        if self.template is None:
            tokens = tokenize([f"{self.prefix_text} {name}." for name in names])
        else:
            tokens = tokenize([self.template.format(name) for name in names])
        eot = tokens.argmax(dim=-1)
        length = int(eot.max()) + 1
        device = self.ctx.device
        with torch.no_grad():
            emb = embed(tokens.to(device))[:, :length]
        self.register_buffer("token_prefix", emb[:, :1], persistent=False)
        self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx:], persistent=False)
        self.register_buffer("eot", eot.to(device), persistent=False)
        self.register_buffer("tokens", tokens[:, :length].to(device), persistent=False)
        self.name_lens = [bpe_length(name) for name in names]
        self.classnames = names

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def forward(self, shift: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        dtype = self.token_prefix.dtype
        ctx = self.ctx.to(dtype)
        n_cls = self.num_classes
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(n_cls, -1, -1)
        if shift is None:
            return self._assemble(ctx, self.token_prefix, self.token_suffix), self.eot
        ctx = ctx.unsqueeze(0) + shift.to(dtype)[:, None, None, :]  # (B, C, n, D)
        batch = shift.shape[0]
        prefix = self.token_prefix.unsqueeze(0).expand(batch, -1, -1, -1)
        suffix = self.token_suffix.unsqueeze(0).expand(batch, -1, -1, -1)
        return self._assemble(ctx, prefix, suffix), self.eot

    def _assemble(self, ctx: Tensor, prefix: Tensor, suffix: Tensor) -> Tensor:
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=-2)
        return torch.stack([self._assemble_one(ctx[..., i, :, :], prefix[..., i, :, :],
                                               suffix[..., i, :, :], i)
                            for i in range(self.num_classes)], dim=-3)

    def _assemble_one(self, ctx: Tensor, prefix: Tensor, suffix: Tensor, i: int) -> Tensor:
        """``middle``/``front`` layouts for class ``i``: the class tokens move into/before ctx."""
        name_len = self.name_lens[i]
        name, rest = suffix[..., :name_len, :], suffix[..., name_len:, :]
        if self.position == "front":
            return torch.cat([prefix, name, ctx, rest], dim=-2)
        half = self.n_ctx // 2
        return torch.cat([prefix, ctx[..., :half, :], name, ctx[..., half:, :], rest], dim=-2)
