"""Samplers (Dassl's ``dassl.data.samplers``)."""
from .build import AVAI_SAMPLERS, build_sampler

__all__ = ["build_sampler", "AVAI_SAMPLERS"]
