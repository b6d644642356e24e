"""Gaussian prompt aggregation for any prompt trainer (PromptSRC, DiSa; methods.md §8).

:class:`GPAMixin` adds, to a :class:`~trainers.base.PromptTrainer` subclass, the three things
GPA needs from the engine:

* after each epoch's LR step (``after_last_batch``), accumulate the prompts with that epoch's
  weight; after the last epoch, load the aggregate *before* ``after_epoch`` saves, so that both
  ``model.pth.tar-E`` and the final test use it;
* ``{"gpa_sum", "gpa_epochs"}`` in EVERY saved checkpoint (``save_model`` is overridden with the
  seam's ``save_checkpoint``, so this also works on a real Dassl, whose ``save_model`` has no
  extra-state hook);
* on resume (and on ``load_model``), the accumulator is restored, so an interrupted run ends
  with the same prompts as an uninterrupted one. Upstream PromptSRC silently lost it.
"""
from __future__ import annotations

import os.path as osp
from typing import Optional

from clipkit.gpa import PromptAggregator, gpa_weights
from dassl_api import load_checkpoint, save_checkpoint


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
    def save_model(self, epoch: int, directory: str, is_best: bool = False,
                   val_result: Optional[float] = None, model_name: str = "") -> None:
        """Dassl's ``save_model`` (same file content and lines) plus the GPA entries."""
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": None if optim is None else optim.state_dict(),
                "scheduler": None if sched is None else sched.state_dict(),
                "val_result": val_result,
            }
            engine_extra = getattr(super(), "extra_checkpoint_state", None)  # dasslite's hook
            if engine_extra is not None:
                state.update(engine_extra(name))
            if self.gpa_enabled():
                state.update(self.gpa.state())
            save_checkpoint(state, osp.join(directory, name), is_best=is_best,
                            model_name=model_name)

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
