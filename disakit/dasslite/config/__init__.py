"""Configuration (``dassl.config``): engine defaults and ``clean_cfg``."""
from .defaults import clean_cfg, get_cfg_default

__all__ = ["get_cfg_default", "clean_cfg"]
