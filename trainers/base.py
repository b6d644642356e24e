"""The shared base every prompt-learning trainer stands on.

It does, once for all methods, what the original repositories copy-pasted per trainer: CLIP
loading, precision, freezing, optimiser/scheduler registration, the train step (amp/fp16/fp32,
NaN check, per-epoch LR step), cached class text features at evaluation, and a ``load_model``
that drops class-dependent buffers. A method subclass supplies ``CFG_NODE``, ``build_custom_clip``
and ``compute_loss``. Everything Dassl comes from the seam (:mod:`dassl_api`), so the same class
runs on our engine or on a real Dassl; checkpoint bookkeeping (save, resume, the rolling resume
point, extra checkpoint state) is the bundled engine's on either (``RunBookkeeping``).
"""
from __future__ import annotations

import os
import os.path as osp
from typing import ClassVar, Optional, Sequence

import torch
from torch import Tensor, nn

from disakit.clipkit.deep_prompts import PromptDepthError
from disakit.clipkit.loading import load_clip
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.precision import PrecisionPolicy, check_prec, freeze_all_but
from disakit.dassl_api import (
    TRAINER_REGISTRY,
    RunBookkeeping,
    TrainerBase,
    TrainerX,
    build_lr_scheduler,
    build_optimizer,
    compute_accuracy,
    load_checkpoint,
    load_pretrained_weights,
)
from disakit.trainers.config import ConfigError


def load_clip_for(cfg) -> nn.Module:
    """The one place trainers obtain CLIP: by ``MODEL.BACKBONE.NAME`` (name or path), fp32, CPU."""
    name = cfg.MODEL.BACKBONE.NAME
    if not name:
        raise ValueError("MODEL.BACKBONE.NAME is empty: pass --backbone or set it in the config "
                         "(e.g. ViT-B/16, or a path to a CLIP checkpoint)")
    print(f"Loading CLIP (backbone: {name})")
    clip_model = load_clip(name)
    resolution = clip_model.visual.input_resolution
    if cfg.INPUT.SIZE[0] != resolution:
        raise ValueError(f"INPUT.SIZE {tuple(cfg.INPUT.SIZE)} does not match the CLIP backbone's "
                         f"input resolution {resolution}; set INPUT.SIZE "
                         f"({resolution}, {resolution})")
    return clip_model


class ClipTrainer(RunBookkeeping, TrainerX):
    """Base for trainers that wrap a frozen CLIP (zero-shot and prompt learners alike).

    ``RunBookkeeping`` first: its ``save_model``, ``resume_model_if_exist``, ``before_train`` and
    ``after_epoch`` (the bundled engine's) take precedence over a real Dassl's.
    """

    CFG_NODE: ClassVar[Optional[str]] = None  # e.g. "COOP" -> cfg.TRAINER.COOP

    @property
    def opts(self):
        """This trainer's ``cfg.TRAINER.<NODE>`` options."""
        return self.cfg.TRAINER[self.CFG_NODE]

    def check_cfg(self, cfg) -> None:
        if self.CFG_NODE is not None:
            check_prec(cfg.TRAINER[self.CFG_NODE].PREC, f"TRAINER.{self.CFG_NODE}.PREC")

    def parse_batch_train(self, batch: dict) -> tuple[Tensor, Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def parse_batch_test(self, batch: dict) -> tuple[Tensor, Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)


class PromptTrainer(ClipTrainer):
    """Base for prompt learners: one registered module (the prompt learner) is trained."""

    MODEL_NAME: ClassVar[str] = "prompt_learner"
    # Buffers rebuilt from the current class names; dropped from loaded checkpoints (also those
    # written by the original repositories, which saved them).
    CLASS_DEPENDENT_KEYS: ClassVar[Sequence[str]] = ("token_prefix", "token_suffix", "token_midfix")
    # Whether the default ``loss_summary`` reports the batch accuracy (upstream CoCoOp, MaPLe and
    # IVLP log the loss only).
    SUMMARY_ACC: ClassVar[bool] = True

    model: PromptedCLIP

    # -- what a method defines ----------------------------------------------------------------
    def build_custom_clip(self, clip_model: nn.Module, classnames: list[str]) -> PromptedCLIP:
        raise NotImplementedError

    def compute_loss(self, images: Tensor, labels: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Loss of one batch and the ``loss_summary`` entries (default: CE on the logits)."""
        logits = self.model(images)
        loss = nn.functional.cross_entropy(logits, labels)
        summary = {"loss": loss.item()}
        if self.SUMMARY_ACC:
            summary["acc"] = compute_accuracy(logits, labels)[0].item()
        return loss, summary

    # -- model building ---------------------------------------------------------------------
    def build_model(self) -> None:
        """Load CLIP, cast it, build the method's model, freeze all but the prompt learner."""
        self.build_for_classes(load_clip_for(self.cfg), list(self.dm.dataset.classnames))

    def build_for_classes(self, clip_model: nn.Module, classnames: list[str]) -> None:
        """``build_model`` without the data manager: model, optimiser and scheduler for a given
        CLIP and class list (used by :func:`build_standalone` for benchmarks and tests)."""
        cfg = self.cfg
        self.precision = PrecisionPolicy.resolve(self.opts.PREC, self.device)
        self.precision.prepare_clip(clip_model)
        print("Building custom CLIP")
        try:
            self.model = self.build_custom_clip(clip_model, classnames)
        except PromptDepthError as err:
            raise self._depth_error(err) from None
        self.model.set_grad_checkpointing(bool(cfg.MODEL.GRAD_CHECKPOINTING))
        learner = self.model.prompt_learner
        print("Turning off gradients in both the image and the text encoder")
        trainable = freeze_all_but(self.model, learner)
        print(f"Parameters to be updated: {set(trainable)}")
        print(f"Number of learnable parameters: {sum(p.numel() for p in learner.parameters()):,}")
        if cfg.MODEL.INIT_WEIGHTS:
            load_pretrained_weights(learner, cfg.MODEL.INIT_WEIGHTS)
        self.model.to(self.device)
        self.optim = build_optimizer(learner, cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
        self.register_model(self.MODEL_NAME, learner, self.optim, self.sched)
        self.scaler = self.precision.grad_scaler()
        self._eval_text_feats: Optional[Tensor] = None

    # -- training -----------------------------------------------------------------------------
    def forward_backward(self, batch: dict) -> dict[str, float]:
        """One step: loss under the precision policy, update, per-epoch LR step at the end."""
        images, labels = self.parse_batch_train(batch)
        with self.precision.autocast():
            loss, summary = self.compute_loss(images, labels)
        self.backward_and_step(loss, summary)
        if self.batch_idx + 1 == self.num_batches:
            self.update_lr()
            self.after_last_batch()
        return summary

    def after_last_batch(self) -> None:
        """Hook run after the epoch's LR step (e.g. PromptSRC's prompt aggregation)."""

    def backward_and_step(self, loss: Tensor, summary: dict[str, float]) -> None:
        """Zero-grad, backward (scaled under amp), optimiser step; stop loudly on NaN/Inf."""
        if not torch.isfinite(loss).all():
            terms = ", ".join(f"{k}={v:.4g}" for k, v in summary.items())
            raise FloatingPointError(
                f"Loss is infinite or NaN! (epoch {self.epoch + 1}, batch {self.batch_idx + 1}; "
                f"{terms}). Lower OPTIM.LR or use PREC fp32/amp; nothing was saved for this epoch"
            )
        self.optim.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optim.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optim)
        self.scaler.update()

    # -- evaluation ---------------------------------------------------------------------------
    def set_model_mode(self, mode: str = "train", names=None) -> None:
        self._eval_text_feats = None  # prompts may change in train mode; recompute at eval
        super().set_model_mode(mode, names)
        self.model.train(mode == "train")
        # The frozen CLIP stays in eval mode (no dropout in CLIP, but keep BN-free ResNets exact).
        for module in (self.model.text, self.model.vision):
            module.eval()

    @torch.no_grad()
    def model_inference(self, images: Tensor) -> Tensor:
        """Logits; class text features are computed once per evaluation, not per batch."""
        with self.precision.autocast():
            if self._eval_text_feats is None:
                self._eval_text_feats = self.model.text_features()
            return self.model(images, self._eval_text_feats)

    # -- checkpoints --------------------------------------------------------------------------
    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load learned weights, dropping class-dependent buffers (base -> new, cross-dataset)."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            self._untrained_eval = not self.cfg.MODEL.INIT_WEIGHTS
            return
        self._untrained_eval = False
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            path = osp.join(directory, name, model_file)
            if not osp.exists(path):
                raise FileNotFoundError(f'Model not found at "{path}"'
                                        + _load_hint(directory, name))
            checkpoint = load_checkpoint(path)
            state_dict = self._drop_class_dependent(checkpoint["state_dict"])
            print(f'Loading weights to {name} from "{path}" (epoch = {checkpoint["epoch"]})')
            self._load_strictly_learned(name, state_dict, path)
            self.on_checkpoint_loaded(checkpoint)
        self._eval_text_feats = None

    def test(self, split: Optional[str] = None):
        """Dassl's test, preceded by a warning when ``load_model`` was given no model."""
        if getattr(self, "_untrained_eval", False):
            print(f"Warning: evaluating {type(self).__name__}'s UNTRAINED (initial) prompts: "
                  "no --model-dir was given to --eval-only, so these numbers are not a trained "
                  "model's; pass --model-dir <training output dir> (and --load-epoch N)")
        return super().test(split)

    def _depth_error(self, err: PromptDepthError) -> ConfigError:
        """``err`` with the full config keys, the backbone's layer counts and the fix."""
        node = f"TRAINER.{self.CFG_NODE}"
        towers = ", ".join(f"{n} {t}" for t, n in err.tower_layers.items())
        fix = " ".join(f"{node}.{key} {limit}" for key, limit in err.limits.items())
        return ConfigError(
            f"{node}.{err} (backbone {self.cfg.MODEL.BACKBONE.NAME} has {towers} transformer "
            f"layers). Fix: set {node}.{err.key} between {err.low} and {err.limits[err.key]}, "
            f"e.g. append `{fix}` to the command (or set it in the config file)")

    def on_checkpoint_loaded(self, checkpoint: dict) -> None:
        """Hook for trainers that keep extra checkpoint keys (e.g. GPA accumulators)."""

    def _drop_class_dependent(self, state_dict: dict) -> dict:
        drop = set(self.CLASS_DEPENDENT_KEYS)
        return {k: v for k, v in state_dict.items()
                if k.removeprefix("prompt_learner.") not in drop}

    def _load_strictly_learned(self, name: str, state_dict: dict, path: str) -> None:
        """Load with ``strict=False`` but refuse checkpoints that miss or add learned weights."""
        module = self._models[name]
        result = module.load_state_dict(state_dict, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise RuntimeError(
                f'checkpoint "{path}" does not match {type(self).__name__}\'s {name}: missing '
                f"{result.missing_keys}, unexpected {result.unexpected_keys}. Was it trained "
                "with another trainer or config (e.g. N_CTX, prompt depth)?"
            )


def _load_hint(directory: str, name: str) -> str:
    folder = osp.join(directory, name)
    if not osp.isdir(folder):
        return f" (no folder {folder}: is --model-dir the training output directory?)"
    files = sorted(f for f in os.listdir(folder) if f.startswith("model"))
    return f" (available in {folder}: {files}; check --load-epoch against the config's MAX_EPOCH)"


def build_standalone(cfg, clip_model: nn.Module, classnames: Sequence[str],
                     device: str | torch.device = "cpu") -> PromptTrainer:
    """The trainer ``cfg.TRAINER.NAME`` with model, optimiser and scheduler, but no dataset.

    Why: benchmarks and tests drive ``forward_backward`` / ``model_inference`` on synthetic
    tensors; building data loaders (and a dataset on disk) just to get class names would dominate
    their cost. The trainer is set up as at the first batch of epoch 1 of a one-batch epoch
    (``epoch``, ``batch_idx``, ``num_batches``, ``max_epoch`` can be changed afterwards);
    ``load_clip_for`` and the data manager are skipped, so ``self.dm`` does not exist.
    """
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    trainer = trainer_cls.__new__(trainer_cls)
    TrainerBase.__init__(trainer)
    trainer.check_cfg(cfg)
    trainer.cfg, trainer.device = cfg, torch.device(device)
    trainer.output_dir = cfg.OUTPUT_DIR
    trainer.start_epoch = trainer.epoch = trainer.batch_idx = 0
    trainer.max_epoch, trainer.num_batches = cfg.OPTIM.MAX_EPOCH, 1
    trainer.build_for_classes(clip_model, list(classnames))
    return trainer
