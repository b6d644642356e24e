"""Running averages for losses and timings, printed in the batch line (docs/engine.md)."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, Optional

__all__ = ["AverageMeter", "MetricMeter"]


def _to_float(val: Any) -> Any:
    """Turn a 0-dim tensor (or numpy scalar) into a Python number; leave numbers alone."""
    return val.item() if hasattr(val, "item") else val


class AverageMeter:
    """Current value and running (or exponential moving) average of one quantity.

    Why: the batch line prints both the latest value and the average since the epoch began.
    """

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val: Any = 0
        self.avg: float = 0
        self.sum: float = 0
        self.count = 0

    def update(self, val: Any, n: int = 1) -> None:
        """Record ``val`` (a number or 0-dim tensor) observed ``n`` times."""
        val = _to_float(val)
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """A set of named ``AverageMeter``s fed from the dict ``forward_backward`` returns.

    ``str()`` gives ``<key> <val:.4f> (<avg:.4f>)`` per key in insertion order, joined by the
    delimiter; this is the ``<meters>`` part of the batch line.
    """

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: Dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: Optional[Dict[str, Any]]) -> None:
        """Update each named meter; ``None`` is ignored, anything but a dict is an error."""
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            self.meters[k].update(_to_float(v))

    def __str__(self) -> str:
        output_str = [
            f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items()
        ]
        return self.delimiter.join(output_str)
