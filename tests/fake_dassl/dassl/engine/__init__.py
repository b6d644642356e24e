from .build import TRAINER_REGISTRY, build_trainer  # noqa: F401  isort:skip
from .trainer import TrainerX, TrainerBase, SimpleTrainer  # noqa: F401  isort:skip
