"""Macro-F1 and confusion matrix without scikit-learn (docs/engine.md#evaluator).

Both reproduce scikit-learn's numbers for the calls Dassl makes:
``f1_score(y_true, y_pred, average="macro", labels=unique(y_true))`` and
``confusion_matrix(y_true, y_pred, normalize="true")``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["macro_f1_score", "confusion_matrix"]


def macro_f1_score(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Mean over the classes present in ``y_true`` of ``2tp / (2tp + fp + fn)``, in [0, 1].

    Classes that are only predicted, never true, get no score of their own (as scikit-learn
    with ``labels=unique(y_true)``); predicting them still costs the true class a false negative.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    scores = []
    for c in np.unique(t):
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        scores.append(2 * tp / (2 * tp + fp + fn))  # > 0 denominator: c occurs in y_true
    return float(np.mean(scores)) if scores else 0.0


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int]) -> np.ndarray:
    """Row-normalised confusion matrix over the sorted labels seen in ``y_true`` or ``y_pred``.

    ``C[i, j]`` is the share of true-``i`` samples predicted as ``j``; rows of labels that never
    occur as true labels are all zero.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    labels = np.unique(np.concatenate([t, p]))
    index = {label: i for i, label in enumerate(labels.tolist())}
    counts = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for ti, pi in zip(t.tolist(), p.tolist()):
        counts[index[ti], index[pi]] += 1
    row_sums = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
