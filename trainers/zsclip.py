"""Zero-shot CLIP (docs/methods/zeroshotclip.md): hand-crafted prompts, nothing learned."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.precision import PrecisionPolicy
from disakit.clipkit.templates import SELECT7, custom_template, text_bank
from disakit.trainers.base import ClipTrainer


@bundled_trainer
class ZeroshotCLIP(ClipTrainer):
    """CLIP with the dataset's custom template, e.g. ``a photo of a {}, a type of pet.``.

    It has no config node: its settings are the empty :class:`TrainerSettings` (the default).
    """

    model: PromptedCLIP
    text_feats: Tensor

    def templates(self) -> Sequence[str]:
        return [custom_template(self.cfg.DATASET.NAME)]

    def build_for_classes(self, clip_model: nn.Module, classnames: list[str]) -> None:
        """Encode the class text bank once (fp16 where CUDA runs); nothing is registered or
        trained."""
        self.precision = PrecisionPolicy.resolve("fp16", self.device)
        self.precision.prepare_clip(clip_model)
        self.model = PromptedCLIP(clip_model).to(self.device).eval()
        templates = self.templates()
        self.report_templates(templates, classnames)
        self.text_feats = text_bank(self.model.text, classnames, templates)

    def report_templates(self, templates: Sequence[str], classnames: Sequence[str]) -> None:
        names = [c.replace("_", " ") for c in classnames]
        print(f"Prompts: {[templates[0].format(c) for c in names]}")

    @torch.no_grad()
    def model_inference(self, images: Tensor) -> Tensor:
        return self.model.logits(self.model.frozen_image_features(images), self.text_feats)

    def set_model_mode(self, mode: str = "train", names: Optional[Sequence[str]] = None) -> None:
        self.model.eval()

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        print("Note that load_model() is skipped as no pretrained model is given")

    def train(self, *args, **kwargs) -> None:
        raise RuntimeError(f"{type(self).__name__} has nothing to train: run it with --eval-only")


@bundled_trainer
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling: SELECT7 + the custom template, normalised mean (7 on ImageNet)."""

    def templates(self) -> Sequence[str]:
        custom = custom_template(self.cfg.DATASET.NAME)
        extra = [] if self.cfg.DATASET.NAME == "ImageNet" else [custom]
        return list(SELECT7) + extra  # a new list per instance (upstream's shared list grew)

    def report_templates(self, templates: Sequence[str], classnames: Sequence[str]) -> None:
        print(f"Prompt ensembling (n={len(templates)})")
