"""The one seam between this toolkit and the Dassl API.

Every trainer (``trainers/``) and dataset (``datasets/``) imports Dassl names from here and
nowhere else. When a real Dassl.pytorch is importable (``import dassl`` works), its objects are
re-exported, so our trainers and datasets register into *its* registries and run on *its*
engine unchanged. Otherwise the bundled engine :mod:`dasslite`, which mirrors the same module
layout (``dasslite.config`` for ``dassl.config`` and so on), is used. ``dasslite`` never owns the
top-level name ``dassl``, so it cannot shadow a real installation.

Set ``DASSL_BACKEND=dasslite`` to force the bundled engine even where ``dassl`` is installed,
or ``DASSL_BACKEND=dassl`` to fail loudly when it is not.

With a real Dassl, :mod:`disakit.dassl_compat` first adapts it to the installed torch (once,
announced in one ``disakit: adapted Dassl ...`` line), and the trainers keep the bundled
engine's checkpoint bookkeeping (:class:`RunBookkeeping`).
"""
from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING


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


# The re-exported names, written out so that static tools (mypy, IDEs) see them. For the type
# checker the bundled engine's objects stand for both engines (``TYPE_CHECKING`` picks that
# branch); at run time the real Dassl's are used when it is the backend. The two branches import
# the same names from the same module paths (``dasslite`` mirrors Dassl's layout).
if TYPE_CHECKING or BACKEND == "dasslite":
    from disakit.dasslite.config import clean_cfg, get_cfg_default
    from disakit.dasslite.data import DataManager, DatasetWrapper
    from disakit.dasslite.data.data_manager import build_data_loader
    from disakit.dasslite.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
    from disakit.dasslite.data.transforms import build_transform
    from disakit.dasslite.engine import (
        TRAINER_REGISTRY,
        SimpleTrainer,
        TrainerBase,
        TrainerX,
        build_trainer,
    )
    from disakit.dasslite.evaluation import EVALUATOR_REGISTRY, build_evaluator
    from disakit.dasslite.metrics import compute_accuracy
    from disakit.dasslite.optim import build_lr_scheduler, build_optimizer
    from disakit.dasslite.utils import (
        AverageMeter,
        MetricMeter,
        Registry,
        check_availability,
        check_isfile,
        collect_env_info,
        count_num_param,
        listdir_nohidden,
        load_pretrained_weights,
        mkdir_if_missing,
        read_image,
        read_json,
        resume_from_checkpoint,
        save_checkpoint,
        set_random_seed,
        setup_logger,
        write_json,
    )
else:
    from dassl.config import clean_cfg, get_cfg_default
    from dassl.data import DataManager, DatasetWrapper
    from dassl.data.data_manager import build_data_loader
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
    from dassl.data.transforms import build_transform
    from dassl.engine import TRAINER_REGISTRY, SimpleTrainer, TrainerBase, TrainerX, build_trainer
    from dassl.evaluation import EVALUATOR_REGISTRY, build_evaluator
    from dassl.metrics import compute_accuracy
    from dassl.optim import build_lr_scheduler, build_optimizer
    from dassl.utils import (
        AverageMeter,
        MetricMeter,
        Registry,
        check_availability,
        check_isfile,
        collect_env_info,
        count_num_param,
        listdir_nohidden,
        load_pretrained_weights,
        mkdir_if_missing,
        read_image,
        read_json,
        resume_from_checkpoint,
        save_checkpoint,
        set_random_seed,
        setup_logger,
        write_json,
    )

    # A real Dassl 0.6.3 fails on current torch (warm-up schedulers, checkpoint loading): adapt
    # it once, announced in one line (disakit/dassl_compat.py).
    from disakit import dassl_compat

    dassl_compat.adapt()

# The trainers' checkpoint bookkeeping is the bundled engine's whichever engine runs, so a run
# (its resume points, random states, extra state such as GPA's) is the same on either engine and
# a folder written by one resumes on the other. Checkpoints are read through the project's own
# safe loader whichever engine runs: a real Dassl's ``load_checkpoint`` unpickles arbitrary
# objects (or fails on torch >= 2.6). ``load_matching_weights`` is ``load_pretrained_weights`` on
# a state dict already read (the trainers' ``MODEL.INIT_WEIGHTS``, after their saved-key renames).
from disakit.dasslite.engine.base import TrainerBase as _LiteTrainerBase  # noqa: E402
from disakit.dasslite.engine.trainer import SimpleTrainer as _LiteSimpleTrainer  # noqa: E402
from disakit.dasslite.utils.torchtools import (  # noqa: E402
    load_checkpoint,
    load_matching_weights,
)


class RunBookkeeping:
    """Put before the engine's trainer class in the bases (``class T(RunBookkeeping, TrainerX)``).

    It gives, from the bundled engine (docs/engine.md#checkpoints): ``save_model`` (atomic files,
    random states, the ``extra_checkpoint_state`` hook; the weights through
    ``state_dict_for_checkpoint``, read back through ``state_dict_from_checkpoint``),
    ``resume_model_if_exist`` (stale temporary files removed, the ``checkpoint`` pointer
    required, ``load_extra_checkpoint_state`` called, random states restored), ``before_train``
    (resume, then the best val result so far)
    and ``after_epoch`` (the rolling ``model-resume.pth.tar`` between kept checkpoints). On the
    bundled engine these are the methods the trainer has anyway; on a real Dassl they replace
    Dassl's, whose lifecycle otherwise runs unchanged.
    """

    save_model = _LiteTrainerBase.save_model
    state_dict_for_checkpoint = _LiteTrainerBase.state_dict_for_checkpoint
    state_dict_from_checkpoint = _LiteTrainerBase.state_dict_from_checkpoint
    extra_checkpoint_state = _LiteTrainerBase.extra_checkpoint_state
    load_extra_checkpoint_state = _LiteTrainerBase.load_extra_checkpoint_state
    resume_model_if_exist = _LiteTrainerBase.resume_model_if_exist
    _has_checkpoint = _LiteTrainerBase._has_checkpoint
    before_train = _LiteSimpleTrainer.before_train
    after_epoch = _LiteSimpleTrainer.after_epoch
    _best_or_none = _LiteSimpleTrainer._best_or_none
    _recorded_best_result = _LiteSimpleTrainer._recorded_best_result
    _selects_on_test_set = _LiteSimpleTrainer._selects_on_test_set


__all__ = [
    "BACKEND", "RunBookkeeping", "load_checkpoint", "load_matching_weights",
    # config, engine, data
    "get_cfg_default", "clean_cfg", "TRAINER_REGISTRY", "build_trainer", "TrainerBase",
    "SimpleTrainer", "TrainerX", "DataManager", "DatasetWrapper", "build_data_loader",
    "DATASET_REGISTRY", "build_dataset", "Datum", "DatasetBase", "build_transform",
    # optimisation, evaluation
    "build_optimizer", "build_lr_scheduler", "EVALUATOR_REGISTRY", "build_evaluator",
    "compute_accuracy",
    # utils
    "Registry", "check_availability", "setup_logger", "set_random_seed", "collect_env_info",
    "mkdir_if_missing", "check_isfile", "read_json", "write_json", "read_image",
    "listdir_nohidden", "save_checkpoint", "resume_from_checkpoint", "load_pretrained_weights",
    "count_num_param", "AverageMeter", "MetricMeter",
]
