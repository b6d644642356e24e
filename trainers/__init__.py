"""Bundled trainers. Importing this package registers every trainer in the seam's registry."""
from trainers import coop, zsclip  # noqa: F401  (registration by import)
from trainers.config import TRAINER_KEYS, extend_cfg  # noqa: F401
