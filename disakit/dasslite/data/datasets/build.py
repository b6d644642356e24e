"""Dataset registry and builder (Dassl's ``dassl.data.datasets.build``)."""
from __future__ import annotations

from yacs.config import CfgNode

from disakit.dasslite.utils import Registry, check_availability

from .base_dataset import DatasetBase

__all__ = ["DATASET_REGISTRY", "build_dataset"]

DATASET_REGISTRY = Registry("DATASET")


def build_dataset(cfg: CfgNode) -> DatasetBase:
    """Instantiate the dataset registered as ``cfg.DATASET.NAME``.

    Why a registry: dataset modules register themselves on import, so adding a benchmark needs
    no dispatch table. An unknown name fails before anything is read, with a "do you mean" hint.
    """
    check_availability(cfg.DATASET.NAME, DATASET_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print("Loading dataset: {}".format(cfg.DATASET.NAME))
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
