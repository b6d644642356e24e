"""Bundled trainers. Importing this package defines them (``@bundled_trainer``); registering
them into the seam's (Dassl's) registry is ``disakit.bundle.register()``."""
from disakit.trainers import cocoop, coop, ivlp, kgcoop, maple, promptsrc, vpt, zsclip  # noqa: F401
from disakit.trainers import dapt, disa, dpl  # noqa: F401
from disakit.trainers import mmrl, mmrlpp  # noqa: F401
from disakit.trainers import tcp  # noqa: F401
from disakit.trainers.config import TRAINER_KEYS, extend_cfg  # noqa: F401
