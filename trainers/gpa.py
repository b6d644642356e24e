"""Gaussian prompt aggregation for any prompt trainer (PromptSRC, DiSa; docs/methods/promptsrc.md).

:class:`GPAMixin` adds, to a :class:`~trainers.base.PromptTrainer` subclass, the three things
GPA needs from the engine:

* after each epoch's LR step (``after_last_batch``), accumulate the prompts with that epoch's
  weight; after the last epoch, load the aggregate *before* ``after_epoch`` saves, so that both
  ``model.pth.tar-E`` and the final test use it;
* ``{"gpa_sum", "gpa_epochs"}`` in EVERY saved checkpoint (through the engine's
  ``extra_checkpoint_state`` hook; on a real Dassl, whose ``save_model`` has none, the entries are
  added to the file right after it is written);
* on resume (and on ``load_model``), the accumulator is restored, so an interrupted run ends
  with the same prompts as an uninterrupted one. Upstream PromptSRC silently lost it.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

import torch

from disakit.clipkit.gpa import PromptAggregator, gpa_weights
from disakit.dassl_api import TrainerBase, load_checkpoint

# Our engine's save_model calls ``extra_checkpoint_state``; a real Dassl's does not.
_ENGINE_SAVES_EXTRA_STATE = hasattr(TrainerBase, "extra_checkpoint_state")


def latest_checkpoint_path(directory: str, name: str) -> str:
    """The file a resume loads: the one named in ``<directory>/<name>/checkpoint``."""
    folder = osp.join(directory, name)
    with open(osp.join(folder, "checkpoint")) as pointer:
        return osp.join(folder, pointer.readline().strip())


class GPAMixin:
    """Put before the trainer base in the bases: ``class PromptSRC(GPAMixin, IVLP)``.

    The trainer's config node gives ``GPA_MEAN`` and ``GPA_STD`` (and optionally ``GPA``, a
    switch, as DiSa has); the number of epochs is ``OPTIM.MAX_EPOCH``.
    """

    _gpa: Optional[PromptAggregator] = None

    # -- configuration ------------------------------------------------------------------------
    def gpa_enabled(self) -> bool:
        return bool(self.opts.get("GPA", True))

    @property
    def gpa(self) -> PromptAggregator:
        """The run's aggregator, created on first use from the config."""
        if self._gpa is None:
            opts = self.opts
            self._gpa = PromptAggregator(
                gpa_weights(float(opts.GPA_MEAN), float(opts.GPA_STD), self.cfg.OPTIM.MAX_EPOCH))
        return self._gpa

    def _gpa_module(self):
        return self._models[self.MODEL_NAME]

    # -- training -----------------------------------------------------------------------------
    def after_last_batch(self) -> None:
        super().after_last_batch()
        if not self.gpa_enabled():
            return
        self.gpa.accumulate(self._gpa_module(), self.epoch + 1)
        if self.epoch + 1 == self.max_epoch:
            print("Using GPA model for final inference...")
            self.gpa.load_into(self._gpa_module())
            self._eval_text_feats = None

    # -- checkpoints --------------------------------------------------------------------------
    def extra_checkpoint_state(self, name: str) -> dict:
        """The GPA entries, added by the engine's ``save_model`` to every checkpoint."""
        parent = getattr(super(), "extra_checkpoint_state", None)
        state = dict(parent(name)) if parent is not None else {}
        if self.gpa_enabled():
            state.update(self.gpa.state())
        return state

    def save_model(self, epoch: int, directory: str, is_best: bool = False,
                   val_result: Optional[float] = None, model_name: str = "") -> None:
        """The engine's ``save_model``; on a real Dassl (no extra-state hook) the GPA entries
        are then added to the file it has just written."""
        super().save_model(epoch, directory, is_best=is_best, val_result=val_result,
                           model_name=model_name)
        if _ENGINE_SAVES_EXTRA_STATE or not self.gpa_enabled():
            return
        for name in self.get_model_names():
            path = latest_checkpoint_path(directory, name)
            checkpoint = load_checkpoint(path)
            checkpoint.update(self.gpa.state())
            torch.save(checkpoint, path)

    def resume_model_if_exist(self, directory: str) -> int:
        start_epoch = super().resume_model_if_exist(directory)
        if start_epoch > 0 and self.gpa_enabled():
            checkpoint = load_checkpoint(latest_checkpoint_path(directory, self.MODEL_NAME))
            if "gpa_epochs" not in checkpoint:
                print(f"Warning: checkpoint (epoch {start_epoch}) has no GPA state; prompt "
                      "aggregation continues from it without the earlier epochs")
                self.gpa.skip_to(start_epoch)
            self.on_checkpoint_loaded(checkpoint)
        return start_epoch

    def on_checkpoint_loaded(self, checkpoint: dict) -> None:
        """Restore the accumulator when the checkpoint carries one (resume or ``load_model``)."""
        super().on_checkpoint_loaded(checkpoint)
        if self.gpa_enabled() and "gpa_epochs" in checkpoint:
            self.gpa.load_state(checkpoint, self.device)
