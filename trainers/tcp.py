"""TCP (Yao et al., CVPR 2024): textual-based class-aware prompt tuning (docs/methods/tcp.md).

A CoOp context in a per-dataset template, plus class-aware tokens: a small MLP maps each class's
frozen hand-crafted-prompt feature to ``N_CLASS_TOKENS`` token vectors, written over positions
``1 .. N_CLASS_TOKENS`` of that class's sequence at the input of text block
``CLASS_TOKEN_LAYER`` (:class:`disakit.clipkit.encoders.TokenOverwrite`). Loss: KgCoOp's,
``CE + W · (1 − mean_c cos(ĝ_c, t̂_c))``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.banks import FrozenTextBank
from disakit.clipkit.compat import clip
from disakit.clipkit.encoders import TextTower, TokenOverwrite
from disakit.clipkit.losses import cross_entropy, knowledge_guidance
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.prompts import ContextInit, PromptContext, init_context
from disakit.clipkit.templates import (
    DEFAULT_TEMPLATE,
    TCP_DEFAULT_TEMPLATE,
    TCP_KNOWLEDGE_TEMPLATES,
    TCP_TEMPLATES,
)
from disakit.dassl_api import compute_accuracy
from disakit.trainers.base import PromptTrainer
from disakit.trainers.config import ConfigError
from disakit.trainers.settings import PromptSettings

# Optimisers whose ``eps`` TRAINER.TCP.ADAM_EPS sets (the Adam family of the engine).
ADAM_FAMILY = ("adam", "amsgrad", "adamw", "radam")


@dataclass(frozen=True)
class TCPSettings(PromptSettings):
    """``TRAINER.TCP`` (docs/methods/tcp.md); ``CLASS_TOKEN_LAYER`` is checked against the
    backbone and the templates against ``N_CTX`` when the model is built."""

    NODE = "TCP"

    n_ctx: int
    ctx_init: str
    n_class_tokens: int
    class_token_layer: int
    template: str
    knowledge_template: str
    w: float
    adam_eps: float

    def validate(self) -> None:
        super().validate()
        if self.n_ctx < 1:
            raise self.error("N_CTX", f"must be at least 1, got {self.n_ctx}",
                             self.fix("N_CTX", "a positive number of context tokens"))
        if self.n_class_tokens < 0:
            raise self.error("N_CLASS_TOKENS", "must be 0 (no class-aware tokens) or more, got "
                             f"{self.n_class_tokens}", self.fix("N_CLASS_TOKENS", "0 or more"))
        if self.class_token_layer < 0:
            raise self.error("CLASS_TOKEN_LAYER", "is a text block index (0-based), got "
                             f"{self.class_token_layer}",
                             self.fix("CLASS_TOKEN_LAYER", "a block index from 0"))
        if not self.adam_eps > 0:
            raise self.error("ADAM_EPS", f"must be positive, got {self.adam_eps}",
                             self.fix("ADAM_EPS", "a positive epsilon"))


def tcp_templates(dataset_name: str, template: str = "",
                  knowledge_template: str = "") -> tuple[str, str]:
    """(prompt template, hand-crafted template): a non-empty value given wins, an empty one
    means the dataset's entry of TCP's tables (unknown datasets: the generic ones)."""
    return (template or TCP_TEMPLATES.get(dataset_name, TCP_DEFAULT_TEMPLATE),
            knowledge_template or TCP_KNOWLEDGE_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE))


def class_token_generator(embed_dim: int, width: int, n_tokens: int) -> nn.Sequential:
    """TCP's meta-net: Linear(E → E/4), QuickGELU, Linear(E/4 → n·width) (upstream key names)."""
    return nn.Sequential(OrderedDict([
        ("linear1", nn.Linear(embed_dim, embed_dim // 4)),
        ("relu", clip.model.QuickGELU()),
        ("linear2", nn.Linear(embed_dim // 4, n_tokens * width)),
    ]))


class TCPPromptLearner(PromptContext):
    """Everything TCP learns: the shared context ``ctx`` (in the dataset's template) and the
    class-aware token generator ``meta_net`` (absent with ``n_tokens`` 0)."""

    def __init__(self, init: ContextInit, template: str, embed_dim: int, width: int,
                 n_tokens: int) -> None:
        super().__init__(init, "end", template=template)
        self.n_class_tokens = n_tokens
        self.meta_net: Optional[nn.Sequential] = (
            class_token_generator(embed_dim, width, n_tokens) if n_tokens else None)

    def class_tokens(self, knowledge: Tensor) -> Tensor:
        """Class-aware tokens (C, n, width) from the frozen class features (C, E)."""
        if self.meta_net is None:
            raise RuntimeError("TCP's class-aware tokens are off (N_CLASS_TOKENS 0)")
        out = self.meta_net(knowledge.to(next(self.meta_net.parameters()).dtype))
        return out.view(out.shape[0], self.n_class_tokens, -1)


class TCPCLIP(PromptedCLIP):
    """CLIP with TCP's text prompts; the image tower is CLIP's, unprompted and frozen."""

    prompt_learner: TCPPromptLearner

    def __init__(self, clip_model: nn.Module, classnames: Sequence[str], settings: TCPSettings,
                 template: str, knowledge_template: str) -> None:
        """``settings`` give the context and the class-aware tokens; ``template`` and
        ``knowledge_template`` are the resolved ones (:func:`tcp_templates`)."""
        super().__init__(clip_model)
        init = init_context(self.text.embed, self.text.width, settings.n_ctx, settings.ctx_init,
                            policy="words")
        print(f'Prompt template: "{template}"; context: "{init.prefix_text}" '
              f"({init.n_ctx} tokens, replacing positions 1..{init.n_ctx})")
        print(f"Class-aware tokens: {settings.n_class_tokens} at text layer "
              f'{settings.class_token_layer}, from "{knowledge_template}"')
        embed_dim = self.text.text_projection.shape[1]
        self.prompt_learner = TCPPromptLearner(init, template, embed_dim, self.text.width,
                                               settings.n_class_tokens)
        self.knowledge = FrozenTextBank([knowledge_template])
        self.class_token_layer = settings.class_token_layer
        self.set_classnames(classnames)

    def set_classnames(self, classnames: Sequence[str]) -> None:
        self.prompt_learner.set_classnames(classnames, self.text.embed)

    def knowledge_features(self) -> Tensor:
        """Normalised frozen features of the hand-crafted prompts (C, E), fp32, no gradient."""
        return self.knowledge.features(self.text, self.prompt_learner.classnames)

    def token_overwrite(self) -> Optional[TokenOverwrite]:
        """The class-aware tokens as an overwrite of positions 1..n (None when disabled)."""
        if self.prompt_learner.meta_net is None:
            return None
        tokens = self.prompt_learner.class_tokens(self.knowledge_features())
        return TokenOverwrite(self.class_token_layer, tokens, start=1)

    def text_features(self) -> Tensor:
        embeds, eot = self.prompt_learner()
        feats = self.text.encode_embeddings(embeds, eot, token_overwrite=self.token_overwrite())
        return F.normalize(feats, dim=-1)

    def image_features(self, images: Tensor) -> Tensor:
        return F.normalize(self.vision(images).features, dim=-1)


@bundled_trainer
class TCP(PromptTrainer):
    """L = CE + W · (1 − mean_c cos(ĝ_c, t̂_c)); Adam's eps from ``TRAINER.TCP.ADAM_EPS``."""

    SETTINGS = TCPSettings

    model: TCPCLIP
    settings: TCPSettings

    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        """TCP's model with the dataset's templates (or the configured ones)."""
        s = self.settings
        layers = TextTower(clip_model).num_layers
        if s.n_class_tokens and s.class_token_layer >= layers:
            raise ConfigError(
                f"TRAINER.TCP.CLASS_TOKEN_LAYER {s.class_token_layer} does not exist: the "
                f"backbone {self.cfg.MODEL.BACKBONE.NAME} has {layers} text layers. Fix: set "
                f"it between 0 and {layers - 1}, e.g. append `TRAINER.TCP.CLASS_TOKEN_LAYER "
                f"{layers - 1}` to the command")
        template, knowledge = tcp_templates(self.cfg.DATASET.NAME, s.template,
                                            s.knowledge_template)
        try:
            return TCPCLIP(clip_model, classnames, s, template, knowledge)
        except ValueError as err:
            if "template" not in str(err):
                raise
            raise ConfigError(f"{err} (TRAINER.TCP.TEMPLATE / TRAINER.TCP.N_CTX)") from None

    def build_for_classes(self, clip_model: nn.Module, classnames: list[str]) -> None:
        """The shared build, then Adam's ``eps`` set to ``ADAM_EPS`` (TCP's published runs
        patched Dassl's Adam to eps 1e-3; here it is this trainer's key, shared defaults stay)."""
        super().build_for_classes(clip_model, classnames)
        if self.cfg.OPTIM.NAME in ADAM_FAMILY:
            for group in self.optim.param_groups:
                group["eps"] = self.settings.adam_eps
            print(f"Optimizer {self.cfg.OPTIM.NAME}: eps {self.settings.adam_eps} "
                  "(TRAINER.TCP.ADAM_EPS)")

    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy plus ``W`` times the knowledge-guided term (as KgCoOp)."""
        model = self.model
        text = model.text_features()
        logits = model.logits(model.image_features(images), text)
        loss = (cross_entropy(logits, labels)
                + self.settings.w * knowledge_guidance(text, model.knowledge_features()))
        return loss, {"loss": loss.item(), "acc": compute_accuracy(logits, labels)[0].item()}
