"""Engine configuration defaults (Dassl's ``dassl.config.defaults``; docs/engine.md#configuration).

Every key a trainer or dataset may set must exist here (or be added by the toolkit's
``extend_cfg``): the node is not ``new_allowed``, so yacs rejects unknown keys on merge. Each
default's type is the type the key accepts (yacs checks types on merge).
"""
from __future__ import annotations

from yacs.config import CfgNode as CN

__all__ = ["get_cfg_default", "clean_cfg"]

_C = CN()

# Top level
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"
_C.RESUME = ""
_C.SEED = -1  # negative: no seeding
_C.USE_CUDA = True
_C.VERBOSE = True


def _input_node() -> CN:
    node = CN()
    node.SIZE = (224, 224)
    node.INTERPOLATION = "bilinear"
    node.TRANSFORMS = ()
    node.NO_TRANSFORM = False
    node.PIXEL_MEAN = [0.485, 0.456, 0.406]
    node.PIXEL_STD = [0.229, 0.224, 0.225]
    node.CROP_PADDING = 4
    node.RRCROP_SCALE = (0.08, 1.0)
    node.CUTOUT_N = 1
    node.CUTOUT_LEN = 16
    node.GN_MEAN = 0.0
    node.GN_STD = 0.15
    node.RANDAUGMENT_N = 2
    node.RANDAUGMENT_M = 10
    node.COLORJITTER_B = 0.4
    node.COLORJITTER_C = 0.4
    node.COLORJITTER_S = 0.4
    node.COLORJITTER_H = 0.1
    node.RGS_P = 0.2
    node.GB_P = 0.5
    node.GB_K = 21
    return node


def _dataset_node() -> CN:
    node = CN()
    node.ROOT = ""
    node.NAME = ""
    node.SOURCE_DOMAINS = ()
    node.TARGET_DOMAINS = ()
    node.NUM_LABELED = -1
    node.NUM_SHOTS = -1
    node.VAL_PERCENT = 0.1
    node.STL10_FOLD = -1
    node.CIFAR_C_TYPE = ""
    node.CIFAR_C_LEVEL = 1
    node.ALL_AS_UNLABELED = False
    return node


def _loader_node(sampler: str) -> CN:
    node = CN()
    node.SAMPLER = sampler
    node.BATCH_SIZE = 32
    node.N_DOMAIN = 0
    node.N_INS = 16
    return node


def _dataloader_node() -> CN:
    node = CN()
    node.NUM_WORKERS = 4
    node.K_TRANSFORMS = 1
    node.RETURN_IMG0 = False
    node.TRAIN_X = _loader_node("RandomSampler")
    node.TRAIN_U = _loader_node("RandomSampler")
    node.TRAIN_U.SAME_AS_X = True
    node.TEST = CN()
    node.TEST.SAMPLER = "SequentialSampler"
    node.TEST.BATCH_SIZE = 32
    return node


def _model_node() -> CN:
    node = CN()
    node.INIT_WEIGHTS = ""
    node.BACKBONE = CN()
    node.BACKBONE.NAME = ""
    node.BACKBONE.PRETRAINED = True
    node.HEAD = CN()
    node.HEAD.NAME = ""
    node.HEAD.HIDDEN_LAYERS = ()
    node.HEAD.ACTIVATION = "relu"
    node.HEAD.BN = True
    node.HEAD.DROPOUT = 0.0
    return node


def _optim_node() -> CN:
    node = CN()
    node.NAME = "adam"
    node.LR = 0.0003
    node.WEIGHT_DECAY = 5e-4
    node.MOMENTUM = 0.9
    node.SGD_DAMPNING = 0  # upstream spelling
    node.SGD_NESTEROV = False
    node.RMSPROP_ALPHA = 0.99
    node.ADAM_BETA1 = 0.9
    node.ADAM_BETA2 = 0.999
    node.STAGED_LR = False
    node.NEW_LAYERS = ()
    node.BASE_LR_MULT = 0.1
    node.LR_SCHEDULER = "single_step"
    node.STEPSIZE = (-1,)
    node.GAMMA = 0.1
    node.MAX_EPOCH = 10
    node.WARMUP_EPOCH = -1
    node.WARMUP_TYPE = "linear"
    node.WARMUP_CONS_LR = 1e-5
    node.WARMUP_MIN_LR = 1e-5
    node.WARMUP_RECOUNT = True
    return node


def _train_node() -> CN:
    node = CN()
    node.CHECKPOINT_FREQ = 0  # 0: save only the last epoch
    node.PRINT_FREQ = 10
    node.COUNT_ITER = "train_x"
    return node


def _test_node() -> CN:
    node = CN()
    node.EVALUATOR = "Classification"
    node.PER_CLASS_RESULT = False
    node.COMPUTE_CMAT = False
    node.NO_TEST = False
    node.SPLIT = "test"
    node.FINAL_MODEL = "last_step"
    return node


_C.INPUT = _input_node()
_C.DATASET = _dataset_node()
_C.DATALOADER = _dataloader_node()
_C.MODEL = _model_node()
_C.OPTIM = _optim_node()
_C.TRAIN = _train_node()
_C.TEST = _test_node()
_C.TRAINER = CN()
_C.TRAINER.NAME = ""


def get_cfg_default() -> CN:
    """Return a fresh (mutable) copy of the engine defaults."""
    return _C.clone()


def clean_cfg(cfg: CN, trainer: str) -> None:
    """Remove every ``TRAINER.*`` sub-node except ``NAME`` and ``trainer.upper()``.

    Why: ``extend_cfg`` declares one node per trainer; dropping the unused ones shortens the
    config dump in ``log.txt``. Call it before ``cfg.freeze()``.
    """
    keep = {"NAME", trainer.upper()}
    for key in [k for k in cfg.TRAINER.keys() if k not in keep]:
        del cfg.TRAINER[key]
