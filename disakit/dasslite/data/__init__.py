"""Data pipeline (Dassl's ``dassl.data``): datasets, transforms, samplers and loaders."""
from .data_manager import DataManager, DatasetWrapper

__all__ = ["DataManager", "DatasetWrapper"]
