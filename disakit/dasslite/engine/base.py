"""``TrainerBase``: model registry, checkpoint save/resume/load and the hooked epoch loop.

Mirrors ``dassl.engine.trainer.TrainerBase`` (docs/engine.md). A subclass registers one or more
named (model, optimizer, scheduler) triples; every name becomes a checkpoint sub-folder.
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict
from functools import partial
from typing import Any, Dict, List, Optional, Union

import torch
import torch.nn as nn

from ..utils import (
    get_rng_state,
    load_checkpoint,
    remove_stale_temp_files,
    restore_checkpoint,
    save_checkpoint,
    set_rng_state,
    tolist_if_not,
)

__all__ = ["TrainerBase"]

Names = Optional[Union[str, List[str]]]


def _make_summary_writer(log_dir: str) -> Any:
    """A TensorBoard ``SummaryWriter``, or None when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=log_dir)


def _format_val_result(val_result: Optional[float]) -> str:
    return "None" if val_result is None else f"{val_result:.1f}"


class TrainerBase:
    """Base class for iterative trainers: named models, checkpoints and the epoch loop.

    Why: every method shares the same bookkeeping (which modules are saved, which optimizers
    are stepped, how training resumes), so subclasses only implement the hooks (docs/engine.md).
    """

    def __init__(self) -> None:
        self._models: Dict[str, nn.Module] = OrderedDict()
        self._optims: Dict[str, Optional[torch.optim.Optimizer]] = OrderedDict()
        self._scheds: Dict[str, Any] = OrderedDict()
        self._writer = None

    # ----------------------------------------------------------------- model registry
    def register_model(
        self,
        name: str = "model",
        model: Optional[nn.Module] = None,
        optim: Optional[torch.optim.Optimizer] = None,
        sched: Any = None,
    ) -> None:
        """Register a module (and its optimizer/scheduler) to be trained and checkpointed."""
        for attr, what in (("_models", "model"), ("_optims", "optim"), ("_scheds", "sched")):
            if self.__dict__.get(attr) is None:
                raise AttributeError(f"Cannot assign {what} before super().__init__() call")
        assert name not in self._models, "Found duplicate model names"
        if model is None:
            raise TypeError(f"register_model({name!r}) needs a model, got None")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: Names = None) -> List[str]:
        """All registered names in order, or ``names`` (validated) as a list."""
        names_real = list(self._models.keys())
        if names is None:
            return names_real
        names = tolist_if_not(names)
        for name in names:
            assert name in names_real, f"Model {name!r} is not registered ({names_real})"
        return names

    # -------------------------------------------------------------------- checkpoints
    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: Optional[float] = None,
        model_name: str = "",
    ) -> None:
        """Save each registered model to ``directory/<name>/`` with ``epoch + 1`` stored."""
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self.state_dict_for_checkpoint(name),
                "epoch": epoch + 1,
                "optimizer": None if optim is None else optim.state_dict(),
                "scheduler": None if sched is None else sched.state_dict(),
                "val_result": val_result,
                "rng_state": get_rng_state(),
            }
            state.update(self.extra_checkpoint_state(name))
            save_checkpoint(
                state, osp.join(directory, name), is_best=is_best, model_name=model_name
            )

    def state_dict_for_checkpoint(self, name: str) -> Dict[str, Any]:
        """The weights ``save_model`` writes for model ``name``: its ``state_dict()``.

        A trainer that saves some entries under other names (e.g. an upstream repository's)
        renames them here and back in ``state_dict_from_checkpoint``.
        """
        return self._models[name].state_dict()

    def state_dict_from_checkpoint(self, name: str, state_dict: Dict[str, Any]) -> Dict[str, Any]:
        """A checkpoint's ``state_dict`` as model ``name`` loads it (on resume and
        ``load_model``): the inverse of ``state_dict_for_checkpoint``; unchanged by default."""
        return state_dict

    def extra_checkpoint_state(self, name: str) -> Dict[str, Any]:
        """Extra entries saved with model ``name`` (e.g. an accumulator); none by default.

        Readers ignore unknown keys, so this keeps files Dassl-compatible. Entries must be
        tensors or plain Python data so the file still loads with ``weights_only=True``; they
        come back through ``load_extra_checkpoint_state`` on resume.
        """
        return {}

    def load_extra_checkpoint_state(self, name: str, checkpoint: Dict[str, Any]) -> None:
        """Restore what ``extra_checkpoint_state`` saved for model ``name``; no-op by default."""

    def _has_checkpoint(self, directory: str, name: str) -> bool:
        # A folder without the pointer file holds no complete checkpoint (interrupted save).
        return osp.isfile(osp.join(directory, name, "checkpoint"))

    def resume_model_if_exist(self, directory: str) -> int:
        """Resume every registered model from ``directory``; return the next epoch (0 if none)."""
        names = self.get_model_names()
        for name in names:
            remove_stale_temp_files(osp.join(directory, name))
        if not all(self._has_checkpoint(directory, name) for name in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name in names:
            checkpoint = restore_checkpoint(
                osp.join(directory, name), self._models[name], self._optims[name],
                self._scheds[name], prepare=partial(self.state_dict_from_checkpoint, name),
            )
            self.load_extra_checkpoint_state(name, checkpoint)
            start_epoch = checkpoint["epoch"]
        if "rng_state" in checkpoint:  # continue the random streams where the run stopped
            set_rng_state(checkpoint["rng_state"])
        return start_epoch

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load ``model.pth.tar-<epoch>`` (or ``model-best.pth.tar``) into every model, strictly."""
        if not directory:
            print(
                "Note that load_model() is skipped as no pretrained model is given "
                "(ignore this if it's done on purpose)"
            )
            return
        model_file = self.checkpoint_file_name(epoch)
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                raise FileNotFoundError(f"No model at {model_path}")
            checkpoint = load_checkpoint(model_path)
            val_result = _format_val_result(checkpoint.get("val_result"))
            print(
                f"Load {model_path} to {name} "
                f"(epoch={checkpoint['epoch']}, val_result={val_result})"
            )
            self._models[name].load_state_dict(
                self.state_dict_from_checkpoint(name, checkpoint["state_dict"]))

    @staticmethod
    def checkpoint_file_name(epoch: Optional[int] = None) -> str:
        """``model.pth.tar-<epoch>``, or ``model-best.pth.tar`` when ``epoch`` is None."""
        return "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"

    # ------------------------------------------------------------------------ helpers
    def set_model_mode(self, mode: str = "train", names: Names = None) -> None:
        """``"train"``, or ``"test"``/``"eval"``, for the given (default: all) models."""
        if mode not in ("train", "test", "eval"):
            raise KeyError(f"mode must be 'train', 'test' or 'eval', got {mode!r}")
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names: Names = None) -> None:
        """Step every registered scheduler once (trainers call it at the end of each epoch)."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir: str) -> None:
        """Open a TensorBoard writer; without tensorboard, print the line and write nothing."""
        if self.__dict__.get("_writer") is None:
            print(f"Initialize tensorboard (log_dir={log_dir})")
            self._writer = _make_summary_writer(log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, scalar_value: Any, global_step: Optional[int] = None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    # -------------------------------------------------------------------- epoch loop
    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Generic loop: ``before_train``; per epoch before/run/after; ``after_train``."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for self.epoch in range(self.start_epoch, self.max_epoch):  # noqa: B020 (Dassl's loop)
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def test(self, split: Optional[str] = None) -> Any:
        raise NotImplementedError

    def parse_batch_train(self, batch: Any) -> Any:
        raise NotImplementedError

    def parse_batch_test(self, batch: Any) -> Any:
        raise NotImplementedError

    def forward_backward(self, batch: Any) -> Dict[str, Any]:
        raise NotImplementedError

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------- optimisation steps
    def model_zero_grad(self, names: Names = None) -> None:
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is not None:
                optim.zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names: Names = None) -> None:
        for name in self.get_model_names(names):
            optim = self._optims[name]
            if optim is not None:
                optim.step()

    def model_backward_and_update(self, loss: torch.Tensor, names: Names = None) -> None:
        """Zero-grad, backward (with the NaN/inf check), then step, for the given models."""
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)
