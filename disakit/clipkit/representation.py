"""MMRL's shared representation space on CLIP (docs/methods/mmrl.md, docs/methods/mmrlpp.md).

A learnable space ``R`` (K tokens of width d_r) is mapped, per layer ``l`` of ``REP_LAYERS``, into
each tower by an aligner (``R_v^l``, ``R_t^l``). The towers take them through one
:class:`~disakit.clipkit.encoders.TokenInsertion` each: inserted after CLS / the start-of-text
token at the input of the first representation layer J, refreshed at the later ones (MMRL++:
beta-mixed with the previous block's output). The text input is the dataset's hand-crafted
template (no learned context). Read-outs:

* ``f_c``: CLIP's own image feature, ``ln_post`` of CLS times the frozen projection ``P_v``;
* ``f_r``: the mean over the K representation positions of ``ln_post`` times ``P_r``
  (MMRL: a learned random matrix; MMRL++: ``P_v + A B``, LoRA of rank ``PROJ_LORA_DIM``, B = 0);
* ``t``: the EOT feature, read at ``eot + K``, times the frozen text projection.

Everything learned lives in the learner (the checkpointed ``prompt_learner``), under the names
the official code used inside its ``representation_learner`` (``compound_rep_tokens``,
``compound_rep_tokens_r2vproj``, ``srra_r2tproj`` ...), so its files map key by key
(:meth:`RepresentationLearner.from_official`).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.clipkit.encoders import TextTower, TokenInsertion, VisionTower
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import clean_classname, tokenize

LOGIT_SCALE = 100.0  # the official code's fixed scale (not exp(logit_scale))


class RepLayersError(ValueError):
    """``REP_LAYERS`` that the towers cannot take; ``limit`` is their smaller layer count."""

    def __init__(self, layers: Sequence[int], limit: int, why: str) -> None:
        self.layers, self.limit = list(layers), limit
        super().__init__(f"REP_LAYERS {list(layers)} {why}: they are 1-indexed transformer "
                         f"layers, increasing, between 1 and the towers' {limit} layers")


@dataclass(frozen=True)
class RepresentationSpec:
    """Sizes of the representation space (a trainer builds it from its config node).

    ``layers`` are 1-indexed (the official ``REP_LAYERS``; [6..12] = blocks 5..11 of
    ViT-B/16). ``beta`` 1.0 means plain per-layer overwrite (MMRL). ``res_lora_dim`` and
    ``proj_lora_dim`` > 0 select MMRL++'s shared residual aligners and LoRA projection.
    """

    n_tokens: int = 5
    rep_dim: int = 512
    layers: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12)
    beta: float = 1.0
    res_lora_dim: int = 0
    proj_lora_dim: int = 0
    std: float = 0.02

    def check(self, text_layers: int, vision_layers: int) -> None:
        limit = min(text_layers, vision_layers)
        layers = list(self.layers)
        if not layers:
            raise RepLayersError(layers, limit, "is empty")
        if any(not isinstance(n, int) for n in layers) or layers != sorted(set(layers)):
            raise RepLayersError(layers, limit, "must be increasing whole numbers")
        if layers[0] < 1 or layers[-1] > limit:
            raise RepLayersError(layers, limit, "lie outside the towers")
        if self.n_tokens < 1 or self.rep_dim < 1:
            raise ValueError(f"N_REP_TOKENS ({self.n_tokens}) and REP_DIM ({self.rep_dim}) "
                             "must be >= 1")

    def per_block(self, per_layer: Sequence[Tensor]) -> list[Optional[Tensor]]:
        """The per-layer tokens laid out block by block from the first representation layer
        (None for a block in between that is not a representation layer)."""
        at = {layer: tokens for layer, tokens in zip(self.layers, per_layer)}
        return [at.get(layer) for layer in range(self.layers[0], self.layers[-1] + 1)]


@dataclass
class RepTokens:
    """One evaluation of the aligners: the tokens of every representation layer, per tower."""

    text: list[Tensor]
    vision: list[Tensor]


class RepresentationLearner(nn.Module):
    """MMRL: ``R`` ~ N(0, 0.02²), one ``nn.Linear`` aligner per layer and tower (deep copies of
    ONE initialised layer, so all start identical), and ``P_r`` = ``proj_rep`` ~ width^-½·N(0, 1).
    """

    # Official whole-model checkpoint key -> ours (exact key, or prefix ending in ".").
    OFFICIAL_KEYS: ClassVar[dict[str, str]] = {"representation_learner.": "",
                                               "image_encoder.proj_rep": "proj_rep"}

    def __init__(self, text: TextTower, vision: VisionTower, spec: RepresentationSpec) -> None:
        super().__init__()
        spec.check(text.num_layers, vision.num_layers)
        self.spec = spec
        self.compound_rep_tokens = nn.Parameter(
            torch.empty(spec.n_tokens, spec.rep_dim).normal_(0.0, spec.std))
        self._build_aligners(text.width, vision.width, len(spec.layers))
        self._build_projection(vision)

    def _build_aligners(self, text_width: int, vision_width: int, count: int) -> None:
        single_v = nn.Linear(self.spec.rep_dim, vision_width)
        single_t = nn.Linear(self.spec.rep_dim, text_width)
        self.compound_rep_tokens_r2vproj = nn.ModuleList(
            [copy.deepcopy(single_v) for _ in range(count)])
        self.compound_rep_tokens_r2tproj = nn.ModuleList(
            [copy.deepcopy(single_t) for _ in range(count)])

    def _build_projection(self, vision: VisionTower) -> None:
        width, dim = vision.projection.shape
        self.proj_rep = nn.Parameter(width ** -0.5 * torch.randn(width, dim))

    def forward(self) -> RepTokens:
        """The tokens of every representation layer for both towers (fp32)."""
        r = self.compound_rep_tokens
        return RepTokens([layer(r) for layer in self.compound_rep_tokens_r2tproj],
                         [layer(r) for layer in self.compound_rep_tokens_r2vproj])

    def rep_projection(self, clip_proj: Tensor) -> Tensor:
        """``P_r`` (width, E): MMRL's own learned matrix (``clip_proj`` unused)."""
        return self.proj_rep

    def insertions(self, tokens: RepTokens) -> tuple[TokenInsertion, TokenInsertion]:
        """(text, vision) insertion slots for the towers."""
        spec = self.spec
        first = spec.layers[0] - 1  # 0-based block at whose input the tokens are inserted
        return (TokenInsertion(first, spec.per_block(tokens.text), spec.beta),
                TokenInsertion(first, spec.per_block(tokens.vision), spec.beta))

    @classmethod
    def from_official(cls, state_dict: dict) -> Optional[tuple[dict, int]]:
        """An official whole-model state dict (``representation_learner.*`` plus the frozen
        CLIP) as ours: ``(learned entries renamed, number of entries dropped)``; None when
        ``state_dict`` is not in that layout."""
        if not any(k.startswith("representation_learner.") for k in state_dict):
            return None
        kept = {}
        for key, value in state_dict.items():
            for official, ours in cls.OFFICIAL_KEYS.items():
                if official.endswith(".") and key.startswith(official):
                    kept[ours + key[len(official):]] = value
                elif key == official:
                    kept[ours] = value
        return kept, len(state_dict) - len(kept)


class ResidualAligner(nn.Module):
    """One layer's residual ``A B`` (A: out x rank, Kaiming-uniform; B: rank x in, zero) and
    its own bias; the weight it adds to is shared (:class:`SharedResidualAligner`)."""

    def __init__(self, out_features: int, in_features: int, rank: int, bias: Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(rank, in_features))
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight + self.A @ self.B, self.bias)


class SharedResidualAligner(nn.Module):
    """MMRL++'s SRRA: ``W^l = W_shared + A_l B_l``, ``W_shared`` cloned from one fresh
    ``nn.Linear`` and shared by all layers; each layer has its own bias (starting at that
    Linear's)."""

    def __init__(self, in_features: int, out_features: int, count: int, rank: int) -> None:
        super().__init__()
        base = nn.Linear(in_features, out_features)
        self.weight = nn.Parameter(base.weight.detach().clone())
        self.srra = nn.ModuleList([ResidualAligner(out_features, in_features, rank, base.bias)
                                   for _ in range(count)])

    def forward(self, x: Tensor, index: int) -> Tensor:
        return self.srra[index](x, self.weight)


class RepresentationLearnerPP(RepresentationLearner):
    """MMRL++: shared residual aligners (rank ``res_lora_dim``) and ``P_r = P_v + A B``
    (rank ``proj_lora_dim``; A Kaiming-uniform, B zero, so the branch starts at CLIP's
    projection); the representation positions are beta-mixed after the first layer."""

    OFFICIAL_KEYS: ClassVar[dict[str, str]] = {"representation_learner.": "",
                                               "image_encoder.A": "proj_lora_A",
                                               "image_encoder.B": "proj_lora_B"}

    def __init__(self, text: TextTower, vision: VisionTower, spec: RepresentationSpec) -> None:
        if spec.res_lora_dim < 1 or spec.proj_lora_dim < 1:
            raise ValueError(f"RES_LORA_DIM ({spec.res_lora_dim}) and PROJ_LORA_DIM "
                             f"({spec.proj_lora_dim}) must be >= 1")
        super().__init__(text, vision, spec)

    def _build_aligners(self, text_width: int, vision_width: int, count: int) -> None:
        rank, dim = self.spec.res_lora_dim, self.spec.rep_dim
        self.srra_r2vproj = SharedResidualAligner(dim, vision_width, count, rank)
        self.srra_r2tproj = SharedResidualAligner(dim, text_width, count, rank)

    def _build_projection(self, vision: VisionTower) -> None:
        width, dim = vision.projection.shape
        self.proj_lora_A = nn.Parameter(torch.empty(width, self.spec.proj_lora_dim))
        nn.init.kaiming_uniform_(self.proj_lora_A, a=math.sqrt(5))
        self.proj_lora_B = nn.Parameter(torch.zeros(self.spec.proj_lora_dim, dim))

    def forward(self) -> RepTokens:
        r, count = self.compound_rep_tokens, len(self.spec.layers)
        return RepTokens([self.srra_r2tproj(r, i) for i in range(count)],
                         [self.srra_r2vproj(r, i) for i in range(count)])

    def rep_projection(self, clip_proj: Tensor) -> Tensor:
        return clip_proj.float() + self.proj_lora_A @ self.proj_lora_B


class RepresentationCLIP(PromptedCLIP):
    """CLIP with a representation learner: class-token and representation-token branches.

    The class prompts are ``template.format(class name)``, kept as non-persistent buffers
    (``prompt_embeddings``, ``eot``) and rebuilt by :meth:`set_classnames`.
    """

    prompt_learner: RepresentationLearner
    prompt_embeddings: Tensor  # non-persistent buffers (set_classnames)
    eot: Tensor

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], template: str,
                 learner: type[RepresentationLearner], spec: RepresentationSpec,
                 alpha: float = 0.7) -> None:
        super().__init__(clip_model)
        if not self.vision.is_vit:
            raise ValueError("MMRL's representation tokens need a ViT backbone (e.g. ViT-B/16)")
        self.template, self.alpha = template, alpha
        self.prompt_learner = learner(self.text, self.vision, spec)
        self.set_classnames(classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        self.classnames = list(classnames)
        ids = tokenize([self.template.format(clean_classname(c)) for c in classnames])
        eot = ids.argmax(dim=-1)
        ids = ids[:, : int(eot.max()) + 1]  # exact truncation (docs/methods/README.md)
        device = self.text.positional_embedding.device
        with torch.no_grad():
            embeds = self.text.embed(ids.to(device))
        self.register_buffer("prompt_embeddings", embeds, persistent=False)
        self.register_buffer("eot", eot.to(device), persistent=False)

    @property
    def n_tokens(self) -> int:
        return self.prompt_learner.spec.n_tokens

    def rep_tokens(self) -> RepTokens:
        return self.prompt_learner()

    def text_features(self, tokens: Optional[RepTokens] = None, insert: bool = True) -> Tensor:
        """Normalised class features ``t`` (C, E); ``insert=False``: the towers untouched."""
        insertion = None
        if insert:
            insertion = self.prompt_learner.insertions(tokens or self.rep_tokens())[0]
        feats = self.text.encode_embeddings(self.prompt_embeddings, self.eot, insertion=insertion)
        return F.normalize(feats, dim=-1)

    def encode_image(self, images: Tensor, tokens: Optional[RepTokens] = None,
                     insert: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        """Normalised ``(f_c, f_r)``; ``insert=False``: CLIP's own pass, ``f_r`` None."""
        if not insert:
            return F.normalize(self.vision(images).features, dim=-1), None
        insertion = self.prompt_learner.insertions(tokens or self.rep_tokens())[1]
        out = self.vision(images, insertion=insertion, return_tokens=True)
        rep = self.vision.post_norm(out.tokens[:, 1:1 + self.n_tokens]).mean(dim=1)
        proj = self.prompt_learner.rep_projection(self.vision.projection)
        f_r = rep @ proj.to(rep.dtype)
        return F.normalize(out.features, dim=-1), F.normalize(f_r, dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        return self.encode_image(images)[0]

    @staticmethod
    def scaled(image_feats: Tensor, text_feats: Tensor) -> Tensor:
        """``100 · cos`` in fp32 (the official code's fixed scale)."""
        with torch.autocast(image_feats.device.type, enabled=False):
            return LOGIT_SCALE * image_feats.float() @ text_feats.float().t()

    def logit_pair(self, images: Tensor, text_feats: Optional[Tensor] = None,
                   tokens: Optional[RepTokens] = None) -> tuple[Tensor, Tensor]:
        """``(s_c, s_r)``: class-token and representation-token logits."""
        tokens = tokens or self.rep_tokens()
        if text_feats is None:
            text_feats = self.text_features(tokens)
        f_c, f_r = self.encode_image(images, tokens)
        assert f_r is not None  # encode_image with the tokens inserted always returns f_r
        return self.scaled(f_c, text_feats), self.scaled(f_r, text_feats)

    def fuse(self, s_c: Tensor, s_r: Tensor) -> Tensor:
        """``α · s_c + (1 − α) · s_r``."""
        return self.alpha * s_c + (1.0 - self.alpha) * s_r

    def forward(self, images: Tensor, text_feats: Optional[Tensor] = None) -> Tensor:
        """Fused logits (the base / few-shot inference)."""
        return self.fuse(*self.logit_pair(images, text_feats))
