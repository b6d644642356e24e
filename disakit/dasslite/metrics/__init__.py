"""Metrics (``dassl.metrics``): top-k accuracy, plus native macro-F1 and confusion matrix."""
from .accuracy import compute_accuracy
from .classification import confusion_matrix, macro_f1_score

__all__ = ["compute_accuracy", "macro_f1_score", "confusion_matrix"]
