"""The shared base every prompt-learning trainer stands on.

It does, once for all methods, what the original repositories copy-pasted per trainer: CLIP
loading, precision, freezing, optimiser/scheduler registration, the train step (amp/fp16/fp32,
NaN check, per-epoch LR step), cached class text features at evaluation, and a ``load_model``
that drops class-dependent buffers. A method subclass supplies ``SETTINGS`` (its validated
config, :mod:`trainers.settings`), ``build_custom_clip`` and ``compute_loss``. Everything Dassl
comes from the seam (:mod:`dassl_api`), so the same class runs on our engine or on a real Dassl;
checkpoint bookkeeping (save, resume, the rolling resume point, extra checkpoint state) is the
bundled engine's on either (``RunBookkeeping``); saved-key renames are ``CHECKPOINT_KEYS``.
"""
from __future__ import annotations

import os
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Optional, Sequence, TypeVar

import torch
from torch import Tensor, nn

from disakit.clipkit.deep_prompts import PromptDepthError
from disakit.clipkit.loading import load_clip
from disakit.clipkit.model import PromptedCLIP
from disakit.clipkit.precision import PrecisionPolicy, freeze_all_but
from disakit.dassl_api import (
    TRAINER_REGISTRY,
    RunBookkeeping,
    TrainerX,
    build_lr_scheduler,
    build_optimizer,
    compute_accuracy,
    load_checkpoint,
    load_matching_weights,
)
from disakit.trainers.config import ConfigError
from disakit.trainers.settings import PromptSettings, TrainerSettings

V = TypeVar("V")


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


def map_checkpoint_keys(state_dict: dict[str, V], renames: Mapping[str, str],
                        saving: bool) -> dict[str, V]:
    """The one key mapping between a registered module's state dict and checkpoint files.

    ``renames`` maps in-memory names to saved names (a trainer's ``CHECKPOINT_KEYS``, e.g.
    DAPT's ``{"ctx": "txt_ctx"}``, upstream DAPT's key). ``saving`` applies it (what
    ``save_model`` writes), otherwise it is inverted (what a file holds, ours or an upstream
    repository's, as the module loads it: on resume, ``load_model`` and ``MODEL.INIT_WEIGHTS``).
    Other keys pass unchanged; without renames the same object is returned.
    """
    if not renames:
        return state_dict
    mapping = dict(renames) if saving else {saved: name for name, saved in renames.items()}
    out: dict[str, V] = OrderedDict()
    for key, value in state_dict.items():
        new = mapping.get(key, key)
        if new in out:
            raise ValueError(f"state dict has both {key!r} and an entry that maps to it "
                             f"({new!r}; CHECKPOINT_KEYS {dict(renames)})")
        out[new] = value
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:  # torch's per-module versions, kept as load_state_dict keeps them
        vars(out)["_metadata"] = metadata
    return out


@dataclass(frozen=True)
class DataFree:
    """What stands in for the dataset of a trainer built without one (:func:`build_standalone`):
    the CLIP model, the class names and the device to build on."""

    clip_model: nn.Module
    classnames: tuple[str, ...]
    device: torch.device


class ClipTrainer(RunBookkeeping, TrainerX):
    """Base for trainers that wrap a frozen CLIP (zero-shot and prompt learners alike).

    ``RunBookkeeping`` first: its ``save_model``, ``resume_model_if_exist``, ``before_train`` and
    ``after_epoch`` (the bundled engine's) take precedence over a real Dassl's.

    Construction is the engine's (``check_cfg``, device, ``build_data_loader``, ``build_model``,
    evaluator), in two stages here: ``build_data_loader`` (the dataset) and
    ``build_for_classes`` (everything else, given a CLIP and class names). Passing ``data_free``
    skips the first: :func:`build_standalone`.
    """

    # The validated options (trainers/settings.py); ``CFG_NODE`` is its NODE (set below).
    SETTINGS: ClassVar[type[TrainerSettings]] = TrainerSettings
    CFG_NODE: ClassVar[Optional[str]] = None
    # Saved-key renames of the registered modules, in-memory name -> saved name
    # (:func:`map_checkpoint_keys`).
    CHECKPOINT_KEYS: ClassVar[Mapping[str, str]] = {}

    _settings: Optional[TrainerSettings] = None
    _data_free: Optional[DataFree] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        node = cls.SETTINGS.NODE
        declared = cls.__dict__.get("CFG_NODE", node)
        if declared != node:
            raise TypeError(f"{cls.__name__}.CFG_NODE is {declared!r} but its SETTINGS "
                            f"({cls.SETTINGS.__name__}) read node {node!r}: declare SETTINGS "
                            "only, CFG_NODE follows it")
        cls.CFG_NODE = node

    def __init__(self, cfg: Any, data_free: Optional[DataFree] = None) -> None:
        self._data_free = data_free
        super().__init__(cfg)

    @property
    def settings(self) -> TrainerSettings:
        """This run's ``cfg.TRAINER.<NODE>`` options, typed and validated (``SETTINGS``)."""
        if self._settings is None:
            self._settings = self.SETTINGS.from_cfg(self.cfg)
        return self._settings

    def check_cfg(self, cfg: Any) -> None:
        """Read and validate ``SETTINGS`` first thing, so that a bad ``TRAINER.<NODE>`` value
        fails naming its key before the dataset or CLIP is loaded."""
        self._settings = self.SETTINGS.from_cfg(cfg)

    # -- construction ---------------------------------------------------------------------------
    def build_data_loader(self) -> None:
        """The engine's data manager; built without data, only the class names."""
        if self._data_free is None:
            super().build_data_loader()
            return
        classnames = self._data_free.classnames
        self.num_classes = len(classnames)
        self.lab2cname = dict(enumerate(classnames))

    def build_model(self) -> None:
        """Load CLIP (``MODEL.BACKBONE.NAME``) and build for the dataset's classes; built without
        data, for the given CLIP and classes on the given device."""
        if self._data_free is None:
            self.build_for_classes(load_clip_for(self.cfg), list(self.dm.dataset.classnames))
            return
        self.device = self._data_free.device
        self.build_for_classes(self._data_free.clip_model, list(self._data_free.classnames))

    def build_for_classes(self, clip_model: nn.Module, classnames: list[str]) -> None:
        """Everything ``build_model`` builds, for a given CLIP and class list."""
        raise NotImplementedError

    # -- checkpoint keys ------------------------------------------------------------------------
    def state_dict_for_checkpoint(self, name: str) -> dict[str, Any]:
        return map_checkpoint_keys(super().state_dict_for_checkpoint(name), self.CHECKPOINT_KEYS,
                                   saving=True)

    def state_dict_from_checkpoint(self, name: str, state_dict: dict[str, Any]) -> dict[str, Any]:
        return map_checkpoint_keys(super().state_dict_from_checkpoint(name, state_dict),
                                   self.CHECKPOINT_KEYS, saving=False)

    # (images, labels) without Dassl's domain labels, as the CoOp family's trainers return them.
    def parse_batch_train(self, batch: dict) -> tuple[Tensor, Tensor]:  # type: ignore[override]
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

    SETTINGS: ClassVar[type[PromptSettings]] = PromptSettings  # a method's, with its NODE
    model: PromptedCLIP
    settings: PromptSettings

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
    def build_for_classes(self, clip_model: nn.Module, classnames: list[str]) -> None:
        """Cast CLIP, build the method's model, freeze all but the prompt learner, then the
        optimiser and scheduler (``build_model``'s work for a given CLIP and class list)."""
        cfg = self.cfg
        self.precision = PrecisionPolicy.resolve(self.settings.prec, self.device)
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
            self.load_init_weights(learner, cfg.MODEL.INIT_WEIGHTS)
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
        # The frozen CLIP stays in eval mode: its ResNet backbones have BatchNorm, whose running
        # statistics train mode would update on every batch (and normalise with batch statistics).
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
            state_dict = self._drop_class_dependent(
                self.state_dict_from_checkpoint(name, checkpoint["state_dict"]))
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

    def load_init_weights(self, module: nn.Module, path: str) -> None:
        """``MODEL.INIT_WEIGHTS``: the file's entries whose key (``CHECKPOINT_KEYS`` undone) and
        shape match the module's (as the engine's ``load_pretrained_weights``)."""
        checkpoint = load_checkpoint(path)
        state_dict = checkpoint.get("state_dict", checkpoint)
        load_matching_weights(module, self.state_dict_from_checkpoint(self.MODEL_NAME, state_dict),
                              path)

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


def build_standalone(cfg: Any, clip_model: nn.Module, classnames: Sequence[str],
                     device: str | torch.device = "cpu") -> ClipTrainer:
    """The trainer ``cfg.TRAINER.NAME`` with model, optimiser and scheduler, but no dataset.

    Why: benchmarks and tests drive ``forward_backward`` / ``model_inference`` on synthetic
    tensors; building data loaders (and a dataset on disk) just to get class names would dominate
    their cost. It is the engine's construction with :class:`DataFree` in place of the data
    manager (``load_clip_for`` and the data manager are skipped, so ``self.dm`` does not exist).
    The trainer is set up as at the first batch of epoch 1 of a one-batch epoch (``epoch``,
    ``batch_idx``, ``num_batches``, ``max_epoch`` can be changed afterwards).
    """
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    trainer = trainer_cls(cfg, DataFree(clip_model, tuple(classnames), torch.device(device)))
    trainer.batch_idx, trainer.num_batches = 0, 1
    return trainer
