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

__all__ = [
    "BACKEND",
    # config
    "get_cfg_default", "clean_cfg",
    # engine
    "TRAINER_REGISTRY", "build_trainer", "TrainerBase", "SimpleTrainer", "TrainerX",
    # data
    "DataManager", "DatasetWrapper", "DATASET_REGISTRY", "build_dataset", "Datum",
    "DatasetBase", "build_transform",
    # optim, evaluation, metrics
    "build_optimizer", "build_lr_scheduler", "EVALUATOR_REGISTRY", "build_evaluator",
    "compute_accuracy",
    # utils
    "Registry", "check_availability", "setup_logger", "set_random_seed", "collect_env_info",
    "mkdir_if_missing", "check_isfile", "read_json", "write_json", "read_image",
    "listdir_nohidden", "load_checkpoint", "save_checkpoint", "resume_from_checkpoint",
    "load_pretrained_weights", "count_num_param", "AverageMeter", "MetricMeter",
]


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


def _mod(path: str):
    """Import ``<backend>.<path>`` (``path`` is the Dassl dotted path without ``dassl.``)."""
    return importlib.import_module(f"{BACKEND}.{path}" if path else BACKEND)


_config = _mod("config")
get_cfg_default = _config.get_cfg_default
clean_cfg = _config.clean_cfg

_engine = _mod("engine")
TRAINER_REGISTRY = _engine.TRAINER_REGISTRY
build_trainer = _engine.build_trainer
TrainerBase = _engine.TrainerBase
SimpleTrainer = _engine.SimpleTrainer
TrainerX = _engine.TrainerX

_data = _mod("data")
DataManager = _data.DataManager
DatasetWrapper = _data.DatasetWrapper
_datasets = _mod("data.datasets")
DATASET_REGISTRY = _datasets.DATASET_REGISTRY
build_dataset = _datasets.build_dataset
Datum = _datasets.Datum
DatasetBase = _datasets.DatasetBase
build_transform = _mod("data.transforms").build_transform

_optim = _mod("optim")
build_optimizer = _optim.build_optimizer
build_lr_scheduler = _optim.build_lr_scheduler

_evaluation = _mod("evaluation")
EVALUATOR_REGISTRY = _evaluation.EVALUATOR_REGISTRY
build_evaluator = _evaluation.build_evaluator
compute_accuracy = _mod("metrics").compute_accuracy

_utils = _mod("utils")
Registry = _utils.Registry
check_availability = _utils.check_availability
setup_logger = _utils.setup_logger
set_random_seed = _utils.set_random_seed
collect_env_info = _utils.collect_env_info
mkdir_if_missing = _utils.mkdir_if_missing
check_isfile = _utils.check_isfile
read_json = _utils.read_json
write_json = _utils.write_json
read_image = _utils.read_image
listdir_nohidden = _utils.listdir_nohidden
load_checkpoint = _utils.load_checkpoint
save_checkpoint = _utils.save_checkpoint
resume_from_checkpoint = _utils.resume_from_checkpoint
load_pretrained_weights = _utils.load_pretrained_weights
count_num_param = _utils.count_num_param
AverageMeter = _utils.AverageMeter
MetricMeter = _utils.MetricMeter
