"""Gaussian prompt aggregation for any prompt trainer (PromptSRC, DiSa; docs/methods/promptsrc.md).

:class:`GPAMixin` adds, to a :class:`~trainers.base.PromptTrainer` subclass, the three things
GPA needs from the engine:

* after each epoch's LR step (``after_last_batch``), accumulate the prompts with that epoch's
  weight; after the last epoch, load the aggregate *before* ``after_epoch`` saves, so that both
  ``model.pth.tar-E`` and the final test use it;
* ``{"gpa_sum", "gpa_epochs"}`` in EVERY saved checkpoint (through the ``extra_checkpoint_state``
  hook of the trainers' checkpoint bookkeeping, which is the bundled engine's on either engine);
* on resume (``load_extra_checkpoint_state``) and on ``load_model``, the accumulator is restored,
  so an interrupted run ends with the same prompts as an uninterrupted one. Upstream PromptSRC
  silently lost it.

The saved sum is keyed as the saved weights are (the trainer's ``CHECKPOINT_KEYS``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from torch import nn

from disakit.clipkit.gpa import PromptAggregator, gpa_weights
from disakit.trainers.base import PromptTrainer, map_checkpoint_keys
from disakit.trainers.settings import PromptSettings


@dataclass(frozen=True)
class GPASettings(PromptSettings):
    """The keys GPA reads from the trainer's node: ``GPA_MEAN`` and ``GPA_STD`` (the number of
    epochs is ``OPTIM.MAX_EPOCH``)."""

    gpa_mean: float
    gpa_std: float

    @property
    def gpa_enabled(self) -> bool:
        """Whether prompts are aggregated (always, unless a node has a switch: DiSa's ``GPA``)."""
        return True


class GPAMixin(PromptTrainer):
    """Put before the trainer base in the bases: ``class PromptSRC(GPAMixin, IVLP)``; the
    trainer's settings derive from :class:`GPASettings`."""

    settings: GPASettings
    _gpa: Optional[PromptAggregator] = None

    # -- configuration ------------------------------------------------------------------------
    def gpa_enabled(self) -> bool:
        return self.settings.gpa_enabled

    @property
    def gpa(self) -> PromptAggregator:
        """The run's aggregator, created on first use from the settings."""
        if self._gpa is None:
            s = self.settings
            self._gpa = PromptAggregator(gpa_weights(s.gpa_mean, s.gpa_std,
                                                     self.cfg.OPTIM.MAX_EPOCH))
        return self._gpa

    def _gpa_module(self) -> nn.Module:
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
    def extra_checkpoint_state(self, name: str) -> dict[str, Any]:
        """The GPA entries, added by ``save_model`` to every checkpoint."""
        state = dict(super().extra_checkpoint_state(name))
        if self.gpa_enabled():
            gpa = self.gpa.state()
            if gpa["gpa_sum"] is not None:
                gpa["gpa_sum"] = map_checkpoint_keys(gpa["gpa_sum"], self.CHECKPOINT_KEYS,
                                                     saving=True)
            state.update(gpa)
        return state

    def load_extra_checkpoint_state(self, name: str, checkpoint: dict[str, Any]) -> None:
        """On resume: restore the accumulator from the checkpoint just loaded into ``name``."""
        super().load_extra_checkpoint_state(name, checkpoint)
        if name != self.MODEL_NAME or not self.gpa_enabled():
            return
        if "gpa_epochs" not in checkpoint:
            print(f"Warning: checkpoint (epoch {checkpoint['epoch']}) has no GPA state; prompt "
                  "aggregation continues from it without the earlier epochs")
            self.gpa.skip_to(checkpoint["epoch"])
        self.on_checkpoint_loaded(checkpoint)

    def on_checkpoint_loaded(self, checkpoint: dict) -> None:
        """Restore the accumulator when the checkpoint carries one (resume or ``load_model``)."""
        super().on_checkpoint_loaded(checkpoint)
        if self.gpa_enabled() and "gpa_epochs" in checkpoint:
            gpa_sum = checkpoint.get("gpa_sum")
            if gpa_sum is not None:
                gpa_sum = map_checkpoint_keys(gpa_sum, self.CHECKPOINT_KEYS, saving=False)
            self.gpa.load_state({**checkpoint, "gpa_sum": gpa_sum}, self.device)
