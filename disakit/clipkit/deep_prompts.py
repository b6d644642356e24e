"""Deep (multi-layer) text and vision prompts: IVLP, PromptSRC, DiSa, VPT and MaPLe (docs/methods/).

Why one module: these methods differ only in where their per-layer prompts come from. Each
learner here is a :class:`~clipkit.prompts.PromptContext` (layer-0 text context ``ctx`` and the
class token buffers) plus deep prompts; ``text_prompts()`` and ``vision_prompts()`` return
exactly the arguments of :meth:`TextTower.encode_embeddings` and :meth:`VisionTower.forward`.
:class:`DeepPromptedCLIP` wires a learner to CLIP's towers, so a trainer never re-implements an
encoder.

* :class:`VLPromptLearner` (IVLP, PromptSRC, DiSa, VPT): independent text and visual prompts.
* :class:`MultiModalPromptLearner` (MaPLe): visual prompts are linear maps of the text prompts.

Depth ``J`` means layers ``0..J-1`` receive fresh prompts; depth 0 means no prompt in that tower
(the frozen CLIP tower exactly). Dimensions come from the towers, never from ViT-B/16 constants.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from disakit.clipkit.encoders import TextTower, VisionOutput, VisionTower
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import ContextInit, PromptContext, init_context


class PromptDepthError(ValueError):
    """A prompt depth outside what the CLIP towers allow.

    ``key`` is the config leaf at fault (e.g. ``PROMPT_DEPTH_TEXT``), ``low`` its smallest
    valid value, ``limits`` the largest valid value of every depth key of the method and
    ``tower_layers`` the towers' layer counts, so a trainer can name its full config keys.
    """

    def __init__(self, key: str, depth: int, low: int, limits: dict[str, int],
                 tower_layers: dict[str, int]) -> None:
        self.key, self.depth, self.low = key, depth, low
        self.limits, self.tower_layers = limits, tower_layers
        super().__init__(self.describe())

    def describe(self) -> str:
        layers = self.limits[self.key]
        if self.key == "PROMPT_DEPTH":  # MaPLe: one depth for both towers
            return (f"PROMPT_DEPTH {self.depth} must be between {self.low} (layer-0 prompts) "
                    f"and the towers' {layers} layers")
        return f"{self.key} {self.depth} must be between {self.low} and the tower's {layers} layers"


@dataclass(frozen=True)
class DeepPromptSpec:
    """Prompt lengths and depths of both towers (a trainer builds it from its config node)."""

    n_ctx_text: int
    depth_text: int
    n_ctx_vision: int = 0
    depth_vision: int = 0
    ctx_init: str = "a photo of a"
    std: float = 0.02

    @property
    def text_tokens(self) -> int:
        """Learned layer-0 text tokens (none at text depth 0: the prompt is the init phrase)."""
        return self.n_ctx_text if self.depth_text > 0 else 0

    @property
    def vision_tokens(self) -> int:
        return self.n_ctx_vision if self.depth_vision > 0 else 0

    def check(self, text_layers: int, vision_layers: int) -> None:
        """Fail early, naming the config key, when a depth exceeds a tower's layers."""
        limits = {"PROMPT_DEPTH_TEXT": text_layers, "PROMPT_DEPTH_VISION": vision_layers}
        towers = {"text": text_layers, "vision": vision_layers}
        for key, depth in (("PROMPT_DEPTH_TEXT", self.depth_text),
                           ("PROMPT_DEPTH_VISION", self.depth_vision)):
            if not 0 <= depth <= limits[key]:
                raise PromptDepthError(key, depth, 0, limits, towers)
        if self.depth_vision > 0 and self.n_ctx_vision < 1:
            raise ValueError(f"N_CTX_VISION must be >= 1 with PROMPT_DEPTH_VISION "
                             f"{self.depth_vision}; set PROMPT_DEPTH_VISION 0 for no visual "
                             "prompts")


def _normal_prompts(count: int, n_tokens: int, width: int, std: float) -> nn.ParameterList:
    """``count`` independent (n_tokens, width) prompts ~ N(0, std²)."""
    return nn.ParameterList(
        [nn.Parameter(torch.empty(n_tokens, width).normal_(0.0, std)) for _ in range(count)]
    )


class DeepTextPromptContext(PromptContext):
    """Layer-0 text context ``ctx`` + ``compound_prompts_text`` for text layers 1..J_t-1."""

    def __init__(self, init: ContextInit, depth: int, std: float = 0.02) -> None:
        super().__init__(init, "end")
        if depth == 0:  # fixed hand-crafted text (e.g. VPT): nothing learned, nothing saved
            fixed = self.ctx.detach()
            del self.ctx
            self.register_buffer("ctx", fixed, persistent=False)
        width = init.vectors.shape[-1]
        self.compound_prompts_text = _normal_prompts(max(depth - 1, 0), init.n_ctx, width, std)

    def text_prompts(self) -> tuple[Tensor, Tensor, list[Tensor]]:
        """``(embeds, eot, deep)`` for :meth:`TextTower.encode_embeddings`."""
        embeds, eot = PromptContext.forward(self)
        return embeds, eot, list(self.compound_prompts_text)

    def vision_prompts(self) -> tuple[Optional[Tensor], list[Tensor]]:
        """``(layer-0 prompts or None, deep prompts)`` for :meth:`VisionTower.forward`."""
        raise NotImplementedError


def text_init(text: TextTower, spec: DeepPromptSpec) -> ContextInit:
    """Layer-0 context, ``first_n`` policy (docs/methods/README.md): phrase only if n <= 4."""
    return init_context(text.embed, text.width, spec.text_tokens, spec.ctx_init, policy="first_n")


class VLPromptLearner(DeepTextPromptContext):
    """Independent vision-language prompts (IVLP; also PromptSRC, DiSa, VPT).

    Learned: ``ctx`` (n_t, D_t), ``compound_prompts_text`` (J_t-1 of n_t x D_t),
    ``visual_ctx`` (n_v, D_v) appended to the image tokens and ``compound_prompts_visual``
    (J_v-1 of n_v x D_v) replacing them before layers 1..J_v-1; all ~N(0, 0.02²) except ``ctx``,
    which follows the init phrase.
    """

    def __init__(self, text: TextTower, vision: VisionTower, spec: DeepPromptSpec) -> None:
        spec.check(text.num_layers, vision.num_layers)
        super().__init__(text_init(text, spec), spec.depth_text, spec.std)
        n_v, width = spec.vision_tokens, vision.width
        self.visual_ctx = (nn.Parameter(torch.empty(n_v, width).normal_(0.0, spec.std))
                           if n_v else None)
        self.compound_prompts_visual = _normal_prompts(
            max(spec.depth_vision - 1, 0), n_v, width, spec.std)

    def vision_prompts(self) -> tuple[Optional[Tensor], list[Tensor]]:
        return self.visual_ctx, list(self.compound_prompts_visual)


class MultiModalPromptLearner(DeepTextPromptContext):
    """Coupled prompts: ``P_v^0 = proj(ctx)``, ``P_v^i = F_i(P_t^i)`` (docs/methods/maple.md).

    ``compound_prompt_projections`` are deep copies of ONE freshly initialised Linear, so they
    start identical (as upstream). Both towers share the depth J.
    """

    def __init__(self, text: TextTower, vision: VisionTower, n_ctx: int, depth: int,
                 ctx_init: str = "a photo of a", std: float = 0.02) -> None:
        layers = min(text.num_layers, vision.num_layers)
        if not 1 <= depth <= layers:
            raise PromptDepthError("PROMPT_DEPTH", depth, 1, {"PROMPT_DEPTH": layers},
                                   {"text": text.num_layers, "vision": vision.num_layers})
        spec = DeepPromptSpec(n_ctx, depth, n_ctx, depth, ctx_init, std)
        super().__init__(text_init(text, spec), depth, std)
        self.proj = nn.Linear(text.width, vision.width)
        single = nn.Linear(text.width, vision.width)
        self.compound_prompt_projections = nn.ModuleList(
            [copy.deepcopy(single) for _ in range(max(depth - 1, 0))])

    def vision_prompts(self) -> tuple[Optional[Tensor], list[Tensor]]:
        deep = [layer(prompt) for layer, prompt in
                zip(self.compound_prompt_projections, self.compound_prompts_text)]
        return self.proj(self.ctx), deep


LearnerFactory = Callable[[TextTower, VisionTower], DeepTextPromptContext]


class DeepPromptedCLIP(PromptedCLIP):
    """CLIP whose two towers take a deep prompt learner's text and vision prompts."""

    prompt_learner: DeepTextPromptContext

    def __init__(self, clip_model: nn.Module, make_learner: LearnerFactory,
                 classnames: Sequence[str]) -> None:
        super().__init__(clip_model)
        self.prompt_learner = make_learner(self.text, self.vision)
        self.set_classnames(classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        self.prompt_learner.set_classnames(classnames, self.text.embed)

    def text_features(self) -> Tensor:
        embeds, eot, deep = self.prompt_learner.text_prompts()
        return F.normalize(self.text.encode_embeddings(embeds, eot, deep), dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        return F.normalize(self.encode_image(images).features, dim=-1)

    def encode_image(self, images: Tensor, return_tokens: bool = False) -> VisionOutput:
        """Prompted vision pass, unnormalised (``return_tokens``: final token states too)."""
        prompts, deep = self.prompt_learner.vision_prompts()
        return self.vision(images, prompts, deep, return_tokens=return_tokens)
