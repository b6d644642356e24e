"""Transforms (Dassl's ``dassl.data.transforms``)."""
from .transforms import AVAI_CHOICES, INTERPOLATION_MODES, build_transform

__all__ = ["build_transform", "INTERPOLATION_MODES", "AVAI_CHOICES"]
