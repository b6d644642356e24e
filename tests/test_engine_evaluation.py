"""Evaluator numbers and printed blocks (docs/engine.md), native macro-F1, confusion matrix."""
import numpy as np
import pytest
import torch

from disakit.dasslite.config import get_cfg_default
from disakit.dasslite.evaluation import EVALUATOR_REGISTRY, Classification, build_evaluator
from disakit.dasslite.metrics import compute_accuracy, confusion_matrix, macro_f1_score

Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 3]  # class 3 is predicted but never true


def _logits(preds, n_classes=4):
    return torch.nn.functional.one_hot(torch.tensor(preds), n_classes).float()


def _cfg(tmp_path, **test_opts):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    for key, value in test_opts.items():
        setattr(cfg.TEST, key, value)
    return cfg


def test_macro_f1_by_hand():
    # c0: tp2 fp0 fn1 -> 0.8; c1: tp1 fp1 fn1 -> 0.5; c2: tp0 -> 0; c3 excluded
    assert macro_f1_score(Y_TRUE, Y_PRED) == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert macro_f1_score([1, 1], [1, 1]) == 1.0


def test_confusion_matrix_row_normalised_over_union_of_labels():
    expected = np.array([
        [2 / 3, 1 / 3, 0, 0],
        [0, 0.5, 0.5, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
    ])
    np.testing.assert_allclose(confusion_matrix(Y_TRUE, Y_PRED), expected)


def test_compute_accuracy_topk_and_tuple_output():
    output = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 1, 0])
    top1, top2 = compute_accuracy((output, "extra"), target, topk=(1, 2))
    assert top1.shape == (1,) and top1.item() == pytest.approx(100 / 3)
    assert top2.item() == pytest.approx(200 / 3)


def test_result_block_is_exact(tmp_path, capsys):
    evaluator = build_evaluator(_cfg(tmp_path), lab2cname={i: f"c{i}" for i in range(4)})
    assert isinstance(evaluator, Classification)
    evaluator.process(_logits(Y_PRED[:4]), torch.tensor(Y_TRUE[:4]))
    evaluator.process(_logits(Y_PRED[4:]), torch.tensor(Y_TRUE[4:]))
    results = evaluator.evaluate()
    assert list(results) == ["accuracy", "error_rate", "macro_f1"]
    assert results["accuracy"] == 50.0 and results["error_rate"] == 50.0
    assert capsys.readouterr().out == (
        "Loading evaluator: Classification\n"
        "=> result\n* total: 6\n* correct: 3\n* accuracy: 50.0%\n* error: 50.0%\n"
        "* macro_f1: 43.3%\n"
    )


def test_reset_and_thousands_separator(tmp_path, capsys):
    evaluator = Classification(_cfg(tmp_path))
    evaluator.process(_logits([0]), torch.tensor([1]))
    evaluator.reset()
    evaluator.process(_logits([1] * 1200, 2), torch.tensor([1] * 1200))
    evaluator.evaluate()
    out = capsys.readouterr().out
    assert "* total: 1,200\n* correct: 1,200\n* accuracy: 100.0%\n" in out


def test_per_class_block_and_cmat(tmp_path, capsys):
    cfg = _cfg(tmp_path, PER_CLASS_RESULT=True, COMPUTE_CMAT=True)
    lab2cname = {0: "cat", 1: "dog", 2: "owl", 3: "bee"}
    evaluator = Classification(cfg, lab2cname=lab2cname)
    evaluator.process(_logits(Y_PRED), torch.tensor(Y_TRUE))
    results = evaluator.evaluate()
    out = capsys.readouterr().out
    assert out.split("* macro_f1: 43.3%\n")[1] == (
        "=> per-class result\n"
        "* class: 0 (cat)\ttotal: 3\tcorrect: 2\tacc: 66.7%\n"
        "* class: 1 (dog)\ttotal: 2\tcorrect: 1\tacc: 50.0%\n"
        "* class: 2 (owl)\ttotal: 1\tcorrect: 0\tacc: 0.0%\n"
        "* average: 38.9%\n"
        f"Confusion matrix is saved to {tmp_path}/cmat.pt\n"
    )
    assert results["perclass_accuracy"] == pytest.approx((200 / 3 + 50 + 0) / 3)
    saved = torch.load(tmp_path / "cmat.pt", weights_only=False)
    np.testing.assert_allclose(saved, confusion_matrix(Y_TRUE, Y_PRED))


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="lab2cname"):
        Classification(_cfg(tmp_path, PER_CLASS_RESULT=True))
    with pytest.raises(RuntimeError, match="no samples"):
        Classification(_cfg(tmp_path)).evaluate()
    with pytest.raises(ValueError, match=r"do you mean \[Classification\]"):
        build_evaluator(_cfg(tmp_path, EVALUATOR="Classificaton"))
    assert "Classification" in EVALUATOR_REGISTRY.registered_names()
