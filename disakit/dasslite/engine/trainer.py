"""``SimpleTrainer`` and ``TrainerX`` (Dassl's ``dassl.engine.trainer``; docs/engine.md).

``SimpleTrainer`` fixes the build order (data -> model -> evaluator), the train/test lifecycle
and the console lines that ``parse_test_res.py`` and users rely on; ``TrainerX`` adds the epoch
over labelled batches. Prompt learners subclass ``TrainerX``.
"""
from __future__ import annotations

import datetime
import os.path as osp
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..evaluation import build_evaluator
from ..utils import RESUME_FILE, AverageMeter, MetricMeter, load_checkpoint, mkdir_if_missing
from .base import Names, TrainerBase

__all__ = ["TrainerBase", "SimpleTrainer", "TrainerX"]

BEST_VAL_WITHOUT_VAL_WARNING = (
    "Warning: TEST.FINAL_MODEL is best_val but the dataset has no val split, so the model is "
    "selected on the test set; do not report these numbers"
)


def _format_duration(seconds: float) -> str:
    """``H:MM:SS`` (or ``N day(s), H:MM:SS``), as Dassl prints ETA and elapsed time."""
    return str(datetime.timedelta(seconds=int(seconds)))


class SimpleTrainer(TrainerBase):
    """A trainer with one training loader: build order, checkpoints per epoch, final test.

    Why: fixing the lifecycle here (and its exact log lines) lets each method implement only
    ``build_model`` and ``forward_backward``.
    """

    model: torch.nn.Module  # set by each trainer's build_model() (Dassl's convention)

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.check_cfg(cfg)
        use_cuda = torch.cuda.is_available() and cfg.USE_CUDA
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.evaluator = build_evaluator(cfg, lab2cname=self.lab2cname)
        self.best_result = -np.inf

    def check_cfg(self, cfg: Any) -> None:
        """Hook to validate trainer-specific config entries (e.g. ``PREC``); no-op here."""

    def build_data_loader(self) -> None:
        """Build the ``DataManager`` and copy its loaders and dataset facts onto the trainer."""
        from ..data import DataManager  # lazy: keeps ``dasslite.engine`` import light

        dm = DataManager(self.cfg)
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def build_model(self) -> None:
        """Build and ``register_model`` the model(s); every trainer overrides this."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement build_model() (build the model, optimizer "
            "and scheduler, then call self.register_model(...))"
        )

    def train(self) -> None:  # type: ignore[override]
        """Train from ``start_epoch`` (or the resumed epoch) to ``max_epoch``, then test."""
        super().train(self.start_epoch, self.max_epoch)

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        self.start_epoch = self.resume_model_if_exist(directory)
        if self.start_epoch > 0:
            self.best_result = self._recorded_best_result(directory)
        writer_dir = osp.join(self.output_dir, "tensorboard")
        mkdir_if_missing(writer_dir)
        self.init_writer(writer_dir)
        if self._selects_on_test_set():
            print(BEST_VAL_WITHOUT_VAL_WARNING)
        self.time_start = time.time()

    def _best_or_none(self) -> Optional[float]:
        return None if self.best_result == -np.inf else float(self.best_result)

    def _recorded_best_result(self, directory: str) -> float:
        """The best validation result so far, so a resumed run keeps ``model-best`` honest."""
        best = -np.inf
        for name in self.get_model_names():
            path = osp.join(directory, name, "model-best.pth.tar")
            if osp.isfile(path):
                value = load_checkpoint(path).get("val_result")
                best = max(best, -np.inf if value is None else float(value))
        return best

    def _selects_on_test_set(self) -> bool:
        """True when ``best_val`` model selection would silently use the test set (as in Dassl)."""
        best_val = self.cfg.TEST.FINAL_MODEL == "best_val" and not self.cfg.TEST.NO_TEST
        return best_val and getattr(self, "val_loader", None) is None

    def after_epoch(self) -> None:
        last_epoch = (self.epoch + 1) == self.max_epoch
        do_test = not self.cfg.TEST.NO_TEST
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = (self.epoch + 1) % freq == 0 if freq > 0 else False
        if do_test and self.cfg.TEST.FINAL_MODEL == "best_val":
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(
                    self.epoch, self.output_dir, val_result=curr_result,
                    model_name="model-best.pth.tar",
                )
        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
        else:  # a rolling resume point: a kill loses at most the epoch in progress
            self.save_model(self.epoch, self.output_dir, val_result=self._best_or_none(),
                            model_name=RESUME_FILE)

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir)
            else:
                print("Deploy the last-epoch model")
            self.test()
        elapsed = round(time.time() - self.time_start)
        print(f"Elapsed: {_format_duration(elapsed)}")
        self.close_writer()

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` (default ``TEST.SPLIT``); print and return the accuracy."""
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")
        for batch in tqdm(data_loader):
            input, label = self.parse_batch_test(batch)
            output = self.model_inference(input)
            self.evaluator.process(output, label)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def parse_batch_test(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names: Names = None) -> float:
        """LR of the first param group of the first (given) model's optimizer."""
        name = self.get_model_names(names)[0]
        optim = self._optims[name]
        if optim is None:
            raise ValueError(f"model {name!r} was registered without an optimizer; it has no lr")
        return optim.param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """A trainer over labelled data only (``train_loader_x``); the base of all prompt learners."""

    def run_epoch(self) -> None:
        """One pass over ``train_loader_x``; ``forward_backward`` steps the scheduler per epoch."""
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):  # noqa: B020 (Dassl's)
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            batch_time.update(time.time() - end)
            losses.update(loss_summary)
            if self._should_print_batch():
                print(self._batch_line(batch_time, data_time, losses))
            self._write_batch_scalars(losses)
            end = time.time()

    def _should_print_batch(self) -> bool:
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        meet_freq = (self.batch_idx + 1) % print_freq == 0
        only_few_batches = self.num_batches < print_freq
        return meet_freq or only_few_batches

    def _eta(self, batch_time: AverageMeter) -> str:
        nb_remain = self.num_batches - self.batch_idx - 1
        nb_remain += (self.max_epoch - self.epoch - 1) * self.num_batches
        return _format_duration(batch_time.avg * nb_remain)

    def _batch_line(
        self, batch_time: AverageMeter, data_time: AverageMeter, losses: MetricMeter
    ) -> str:
        """The batch line, e.g. ``epoch [1/5] batch [20/76] time ... lr ... eta ...``."""
        info = [
            f"epoch [{self.epoch + 1}/{self.max_epoch}]",
            f"batch [{self.batch_idx + 1}/{self.num_batches}]",
            f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
            f"data {data_time.val:.3f} ({data_time.avg:.3f})",
            f"{losses}",
            f"lr {self.get_current_lr():.4e}",
            f"eta {self._eta(batch_time)}",
        ]
        return " ".join(info)

    def _write_batch_scalars(self, losses: MetricMeter) -> None:
        n_iter = self.epoch * self.num_batches + self.batch_idx
        for name, meter in losses.meters.items():
            self.write_scalar("train/" + name, meter.avg, n_iter)
        self.write_scalar("train/lr", self.get_current_lr(), n_iter)

    def parse_batch_train(
        self, batch: Dict[str, Any]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(img, label, domain)`` on the device; prompt learners return ``(img, label)``."""
        input = batch["img"].to(self.device)
        label = batch["label"].to(self.device)
        domain = batch["domain"].to(self.device)
        return input, label, domain
