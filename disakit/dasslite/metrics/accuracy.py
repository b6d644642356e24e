"""Top-k accuracy of a batch (Dassl's ``dassl.metrics.accuracy``)."""
from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch

__all__ = ["compute_accuracy"]


def compute_accuracy(
    output: Union[torch.Tensor, Tuple[torch.Tensor, ...], List[torch.Tensor]],
    target: torch.Tensor,
    topk: Sequence[int] = (1,),
) -> List[torch.Tensor]:
    """Return, per k, a 1-element tensor holding ``100 * (#targets in the top-k) / batch``.

    ``output`` may be a tuple/list (a model returning extras); its first element is used.
    Trainers report ``compute_accuracy(logits, label)[0].item()`` as the ``acc`` meter.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    res = []
    for k in topk:
        correct_k = correct[:k].reshape(-1).float().sum(0, keepdim=True)
        res.append(correct_k.mul_(100.0 / batch_size))
    return res
