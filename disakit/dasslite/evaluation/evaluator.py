"""Classification evaluator (Dassl's ``dassl.evaluation.evaluator``; docs/engine.md#evaluator).

It prints the ``=> result`` block that ``parse_test_res.py`` parses, so its text is exact.
"""
from __future__ import annotations

import os.path as osp
from collections import OrderedDict, defaultdict
from typing import Any, DefaultDict, Dict, List, Optional

import numpy as np
import torch

from ..metrics import confusion_matrix, macro_f1_score
from ..utils import mkdir_if_missing
from .build import EVALUATOR_REGISTRY

__all__ = ["EvaluatorBase", "Classification"]


class EvaluatorBase:
    """Interface: ``reset()``, then ``process(output, label)`` per batch, then ``evaluate()``."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> "OrderedDict[str, float]":
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Accuracy, error rate, macro-F1 and optional per-class accuracy / confusion matrix."""

    def __init__(
        self, cfg: Any, lab2cname: Optional[Dict[int, str]] = None, **kwargs: Any
    ) -> None:
        super().__init__(cfg)
        self._lab2cname = lab2cname
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname; pass build_evaluator(cfg, "
                             "lab2cname=...) or turn TEST.PER_CLASS_RESULT off")
        self.reset()

    def reset(self) -> None:
        self._correct = 0
        self._total = 0
        self._y_true: List[int] = []
        self._y_pred: List[int] = []
        self._per_class_res: Optional[DefaultDict[int, List[int]]] = (
            defaultdict(list) if self.cfg.TEST.PER_CLASS_RESULT else None
        )

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        """Accumulate one batch: ``mo`` are logits ``[B, C]``, ``gt`` labels ``[B]``."""
        pred = mo.max(1)[1]
        matches = pred.eq(gt).float()
        self._correct += int(matches.sum().item())
        self._total += gt.shape[0]
        self._y_true.extend(gt.data.cpu().numpy().tolist())
        self._y_pred.extend(pred.data.cpu().numpy().tolist())
        if self._per_class_res is not None:
            for label, hit in zip(gt.tolist(), matches.tolist()):
                self._per_class_res[label].append(int(hit))

    def evaluate(self) -> "OrderedDict[str, float]":
        """Print the result block and return accuracy, error_rate, macro_f1 (in %)."""
        if self._total == 0:
            raise RuntimeError("Classification.evaluate() called with no samples; the loader "
                               "is empty or process() was never called")
        acc = 100.0 * self._correct / self._total
        err = 100.0 - acc
        macro_f1 = 100.0 * macro_f1_score(self._y_true, self._y_pred)
        results = OrderedDict(accuracy=acc, error_rate=err, macro_f1=macro_f1)
        print(
            "=> result\n"
            f"* total: {self._total:,}\n"
            f"* correct: {self._correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {err:.1f}%\n"
            f"* macro_f1: {macro_f1:.1f}%"
        )
        if self._per_class_res is not None:
            results["perclass_accuracy"] = self._print_per_class()
        if self.cfg.TEST.COMPUTE_CMAT:
            self._save_cmat()
        return results

    def _print_per_class(self) -> float:
        per_class, lab2cname = self._per_class_res, self._lab2cname
        # evaluate() calls this only with per-class results on, and __init__ then required
        # lab2cname.
        assert per_class is not None and lab2cname is not None
        print("=> per-class result")
        accs = []
        for label in sorted(per_class):
            res = per_class[label]
            correct, total = sum(res), len(res)
            acc = 100.0 * correct / total
            accs.append(acc)
            print(
                f"* class: {label} ({lab2cname[label]})\t"
                f"total: {total:,}\t"
                f"correct: {correct:,}\t"
                f"acc: {acc:.1f}%"
            )
        mean_acc = float(np.mean(accs))
        print(f"* average: {mean_acc:.1f}%")
        return mean_acc

    def _save_cmat(self) -> None:
        cmat = confusion_matrix(self._y_true, self._y_pred)
        mkdir_if_missing(self.cfg.OUTPUT_DIR or ".")
        save_path = osp.join(self.cfg.OUTPUT_DIR, "cmat.pt")
        torch.save(cmat, save_path)
        print(f"Confusion matrix is saved to {save_path}")
