"""MMRL: Multi-Modal Representation Learning (Guo & Gu, CVPR 2025); docs/methods/mmrl.md.

A shared representation space, mapped per layer into both towers and inserted after CLS / the
start-of-text token from layer J on (:mod:`disakit.clipkit.representation`); trained with
``α·CE(s_c) + (1−α)·CE(s_r)`` plus cosine regularisers towards the frozen CLIP (the same
weights, insertion off). Inference is task-aware: fused logits where the classes were trained on
(base classes, few-shot, the cross-dataset source), class-token logits elsewhere.
MMRL++ (:mod:`trainers.mmrlpp`) changes only the learner.
"""
from __future__ import annotations

import os.path as osp
from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

import torch
from torch import Tensor, nn

from disakit.bundle import bundled_trainer
from disakit.clipkit.banks import FrozenTextBank
from disakit.clipkit.losses import representation_terms, total
from disakit.clipkit.representation import (
    RepLayersError,
    RepresentationCLIP,
    RepresentationLearner,
    RepresentationSpec,
    RepTokens,
)
from disakit.clipkit.templates import custom_template
from disakit.dassl_api import compute_accuracy, load_checkpoint
from disakit.trainers.base import PromptTrainer, _load_hint
from disakit.trainers.config import ConfigError
from disakit.trainers.promptsrc import frozen_image_pass
from disakit.trainers.settings import PromptSettings

Task = Literal["auto", "B2N", "FS", "CD"]
DEFAULT_SOURCE = "ImageNet"  # the official code's cross-dataset source (its CD rule)


@dataclass(frozen=True)
class MMRLSettings(PromptSettings):
    """``TRAINER.MMRL`` (docs/methods/mmrl.md); ``REP_LAYERS`` (1-indexed) are checked against
    the backbone when the model is built."""

    NODE = "MMRL"

    alpha: float
    reg_weight: float
    rep_layers: tuple[int, ...]
    rep_dim: int
    n_rep_tokens: int
    task: Task

    def rep_spec(self) -> RepresentationSpec:
        """The representation space's sizes."""
        return RepresentationSpec(self.n_rep_tokens, self.rep_dim, self.rep_layers)


@bundled_trainer
class MMRL(PromptTrainer):
    """MMRL on the shared base: a representation learner, its loss, task-aware inference."""

    SETTINGS: ClassVar[type[MMRLSettings]] = MMRLSettings  # MMRL++: MMRLppSettings
    # The official code's registered name (its files before 2025-06-24: the legacy one).
    MODEL_NAME = "MultiModalRepresentationLearner"
    LEGACY_MODEL_NAMES: ClassVar[tuple[str, ...]] = ("MultiModalPromptLearner",)
    LEARNER: ClassVar[type[RepresentationLearner]] = RepresentationLearner

    model: RepresentationCLIP
    settings: MMRLSettings
    text_teacher: FrozenTextBank
    _fused_eval: bool = True
    _source_dataset: Optional[str] = None
    _eval_tokens: Optional[RepTokens] = None
    _eval_classes: tuple[str, ...] = ()

    # -- model --------------------------------------------------------------------------------
    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> RepresentationCLIP:
        """The representation model on the dataset's template, and the frozen text teacher."""
        template = custom_template(self.cfg.DATASET.NAME)
        self.text_teacher = FrozenTextBank([template])
        spec = self.settings.rep_spec()
        print(f'Text input: the hand-crafted template "{template}"')
        print(f"Representation tokens: {spec.n_tokens} x {spec.rep_dim}, layers "
              f"{list(spec.layers)}")
        try:
            return RepresentationCLIP(clip_model, classnames, template, self.LEARNER, spec,
                                      self.settings.alpha)
        except RepLayersError as err:
            raise ConfigError(
                f"TRAINER.{self.CFG_NODE}.{err} (backbone {self.cfg.MODEL.BACKBONE.NAME}). Fix: "
                f"e.g. `TRAINER.{self.CFG_NODE}.REP_LAYERS [{err.limit}]` (1-indexed)") from None

    # -- training -----------------------------------------------------------------------------
    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``α·CE(s_c) + (1−α)·CE(s_r) + λ·(1 − cos(f_c, f̃)) + λ·(1 − cos(t, t̃))``."""
        model, s = self.model, self.settings
        tokens = model.rep_tokens()
        text = model.text_features(tokens)
        f_c, f_r = model.encode_image(images, tokens)
        assert f_r is not None  # encode_image with the tokens inserted always returns f_r
        s_c, s_r = model.scaled(f_c, text), model.scaled(f_r, text)
        frozen_image = frozen_image_pass(model.vision, images).features
        frozen_text = self.text_teacher.features(model.text, model.classnames)
        terms = representation_terms(s_c, s_r, labels, f_c, frozen_image, text, frozen_text,
                                     s.alpha, s.reg_weight)
        loss = total(terms)
        fused = model.fuse(s_c, s_r)
        return loss, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                      "acc": compute_accuracy(fused, labels)[0].item()}

    def before_train(self) -> None:
        self._source_dataset = self.cfg.DATASET.NAME  # this run's evaluations are on its source
        super().before_train()

    # -- task-aware inference -----------------------------------------------------------------
    def fused_inference(self) -> tuple[bool, str]:
        """Whether this evaluation uses the fused logits, and why (docs/methods/mmrl.md).

        B2N: fused on the base classes, class-token logits otherwise. FS: fused. CD: fused on
        the training source (recorded in our checkpoints; ImageNet for other files, the
        official rule), class-token logits on every other dataset. ``auto``: B2N when the
        classes are subsampled, else CD.
        """
        task: str = self.settings.task
        sub = self.cfg.DATASET.SUBSAMPLE_CLASSES
        name = self.cfg.DATASET.NAME
        if task == "auto":
            task = "B2N" if sub != "all" else "CD"
        if task == "B2N":
            return sub == "base", f"TASK {task}, {sub} classes"
        if task == "FS":
            return True, f"TASK {task}"
        source = self._source_dataset
        if source is None:
            source = DEFAULT_SOURCE
            print(f"Note: the checkpoint does not record its training dataset; taking "
                  f"{source} as the source (the official rule). Pass "
                  f"TRAINER.{self.CFG_NODE}.TASK FS for a few-shot checkpoint")
        return name == source, f"TASK {task}, source {source}, evaluated on {name}"

    def test(self, split: Optional[str] = None):
        self._fused_eval, why = self.fused_inference()
        alpha = self.settings.alpha
        kind = (f"fused logits ({alpha:g} class + {1 - alpha:g} representation)"
                if self._fused_eval else "class-token logits only")
        print(f"{type(self).__name__} inference: {kind} [{why}]")
        return super().test(split)

    @torch.no_grad()
    def model_inference(self, images: Tensor) -> Tensor:
        """Fused or class-token logits; the aligners' tokens and the class features are
        computed once per evaluation (the base resets them with the mode or the weights) and
        again whenever the class set changes."""
        with self.precision.autocast():
            classes = tuple(self.model.classnames)
            if self._eval_text_feats is None or self._eval_classes != classes:
                self._eval_classes = classes
                self._eval_tokens = self.model.rep_tokens()
                self._eval_text_feats = self.model.text_features(self._eval_tokens)
            s_c, s_r = self.model.logit_pair(images, self._eval_text_feats, self._eval_tokens)
            return self.model.fuse(s_c, s_r) if self._fused_eval else s_c

    # -- checkpoints --------------------------------------------------------------------------
    def extra_checkpoint_state(self, name: str) -> dict:
        """The training dataset, so a later evaluation knows its source (``TASK`` CD/auto)."""
        parent = getattr(super(), "extra_checkpoint_state", None)
        state = dict(parent(name)) if parent is not None else {}
        state["source_dataset"] = self.cfg.DATASET.NAME
        return state

    def on_checkpoint_loaded(self, checkpoint: dict) -> None:
        super().on_checkpoint_loaded(checkpoint)
        self._source_dataset = checkpoint.get("source_dataset")

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """As the base, plus the official code's files: the whole model (its learned entries
        are renamed, the frozen CLIP and class-dependent buffers dropped), also in the folder
        name of its older releases."""
        folder = self._legacy_folder(directory) if directory else None
        if folder is None:
            return super().load_model(directory, epoch)
        self._untrained_eval = False
        path = osp.join(directory, folder,
                        "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}")
        if not osp.exists(path):
            raise FileNotFoundError(f'Model not found at "{path}"' + _load_hint(directory, folder))
        checkpoint = load_checkpoint(path)
        state_dict = self._drop_class_dependent(
            self.state_dict_from_checkpoint(self.MODEL_NAME, checkpoint["state_dict"]))
        print(f'Loading weights to {self.MODEL_NAME} from "{path}" (epoch = '
              f'{checkpoint["epoch"]}; the official folder name {folder})')
        self._load_strictly_learned(self.MODEL_NAME, state_dict, path)
        self.on_checkpoint_loaded(checkpoint)
        self._eval_text_feats = None

    def _legacy_folder(self, directory: str) -> Optional[str]:
        if osp.isdir(osp.join(directory, self.MODEL_NAME)):
            return None
        return next((name for name in self.LEGACY_MODEL_NAMES
                     if osp.isdir(osp.join(directory, name))), None)

    def _drop_class_dependent(self, state_dict: dict) -> dict:
        official = self.LEARNER.from_official(state_dict)
        if official is not None:
            state_dict, dropped = official
            print(f"Official {type(self).__name__} checkpoint (whole model): kept the "
                  f"{len(state_dict)} learned tensors, dropped {dropped} frozen-CLIP and "
                  "class-dependent entries")
        return super()._drop_class_dependent(state_dict)

    def _load_strictly_learned(self, name: str, state_dict: dict, path: str) -> None:
        try:
            super()._load_strictly_learned(name, state_dict, path)
        except RuntimeError as err:
            if "size mismatch" not in str(err):
                raise
            node, s = f"TRAINER.{self.CFG_NODE}", self.settings
            raise RuntimeError(
                f'checkpoint "{path}" has other representation sizes than this config '
                f"({node}.N_REP_TOKENS {s.n_rep_tokens}, {node}.REP_DIM {s.rep_dim}, "
                f"{node}.REP_LAYERS {list(s.rep_layers)}); e.g. "
                f"EuroSAT's table sets REP_DIM 2048, the cross-dataset tests REP_DIM 512. "
                f"{err}") from None
