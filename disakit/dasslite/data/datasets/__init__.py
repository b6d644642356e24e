"""Datasets (Dassl's ``dassl.data.datasets``): registry, builder, ``Datum``, ``DatasetBase``.

Benchmark readers live in the toolkit's top-level ``datasets/`` package and register into
``DATASET_REGISTRY`` on import.
"""
from .base_dataset import DatasetBase, Datum, make_datum_unchecked
from .build import DATASET_REGISTRY, build_dataset

__all__ = ["DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase", "make_datum_unchecked"]
