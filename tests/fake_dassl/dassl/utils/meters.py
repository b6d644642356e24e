"""``dassl.utils.meters`` (borrowed from the bundled engine)."""
from disakit.dasslite.utils import AverageMeter, MetricMeter

__all__ = ["AverageMeter", "MetricMeter"]
