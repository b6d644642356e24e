"""Bundled trainers. Importing this package defines them (``@bundled_trainer``); registering
them into the seam's (Dassl's) registry is ``disakit.bundle.register()``."""
from disakit.trainers import (  # noqa: F401  # noqa: F401  # noqa: F401
    cocoop,
    coop,
    dapt,
    disa,
    dpl,
    ivlp,
    kgcoop,
    maple,
    mmrl,
    mmrlpp,
    promptsrc,
    tcp,  # noqa: F401
    vpt,
    zsclip,
)
from disakit.trainers.config import TRAINER_KEYS, extend_cfg  # noqa: F401
