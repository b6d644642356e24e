"""The one seam between this toolkit and the Dassl API.

Every trainer (``trainers/``) and dataset (``datasets/``) imports Dassl names from here and
nowhere else. When a real Dassl.pytorch is importable (``import dassl`` works), its objects are
re-exported, so our trainers and datasets register into *its* registries and run on *its*
engine unchanged. Otherwise the bundled engine :mod:`dasslite`, which mirrors the same module
layout (``dasslite.config`` for ``dassl.config`` and so on), is used. ``dasslite`` never owns the
top-level name ``dassl``, so it cannot shadow a real installation.

Set ``DASSL_BACKEND=dasslite`` to force the bundled engine even where ``dassl`` is installed,
or ``DASSL_BACKEND=dassl`` to fail loudly when it is not.
"""
from __future__ import annotations

import importlib
import importlib.util
import os


def _choose_backend() -> str:
    wanted = os.environ.get("DASSL_BACKEND", "").strip().lower()
    if wanted not in ("", "dassl", "dasslite"):
        raise ValueError(
            f"DASSL_BACKEND must be 'dassl' or 'dasslite', got {wanted!r}"
        )
    if wanted == "dasslite":
        return "dasslite"
    if importlib.util.find_spec("dassl") is not None:
        return "dassl"
    if wanted == "dassl":
        raise ImportError(
            "DASSL_BACKEND=dassl but no 'dassl' package is importable; install "
            "Dassl.pytorch or unset DASSL_BACKEND to use the bundled engine"
        )
    return "dasslite"


BACKEND: str = _choose_backend()


# Dassl module path (without the leading "dassl.") -> the names re-exported from it.
EXPORTS: dict[str, tuple[str, ...]] = {
    "config": ("get_cfg_default", "clean_cfg"),
    "engine": ("TRAINER_REGISTRY", "build_trainer", "TrainerBase", "SimpleTrainer", "TrainerX"),
    "data": ("DataManager", "DatasetWrapper"),
    "data.datasets": ("DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase"),
    "data.transforms": ("build_transform",),
    "optim": ("build_optimizer", "build_lr_scheduler"),
    "evaluation": ("EVALUATOR_REGISTRY", "build_evaluator"),
    "metrics": ("compute_accuracy",),
    "utils": ("Registry", "check_availability", "setup_logger", "set_random_seed",
              "collect_env_info", "mkdir_if_missing", "check_isfile", "read_json", "write_json",
              "read_image", "listdir_nohidden", "load_checkpoint", "save_checkpoint",
              "resume_from_checkpoint", "load_pretrained_weights", "count_num_param",
              "AverageMeter", "MetricMeter"),
}
__all__ = ["BACKEND", *(name for names in EXPORTS.values() for name in names)]

for _path, _names in EXPORTS.items():
    _module = importlib.import_module(
        f"{'dassl' if BACKEND == 'dassl' else 'disakit.dasslite'}.{_path}")
    for _name in _names:
        globals()[_name] = getattr(_module, _name)

# Checkpoints are read through the project's own safe loader whichever engine runs: a real
# Dassl's ``load_checkpoint`` unpickles arbitrary objects (or fails on torch >= 2.6).
from disakit.dasslite.utils.torchtools import load_checkpoint  # noqa: E402
