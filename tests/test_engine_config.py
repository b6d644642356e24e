"""Engine config defaults, clean_cfg and the yacs behaviour we rely on (docs/engine.md)."""
import pytest
from yacs.config import CfgNode

from disakit.dasslite.config import clean_cfg, get_cfg_default

EXPECTED_DEFAULTS = {
    "VERSION": 1, "OUTPUT_DIR": "./output", "RESUME": "", "SEED": -1, "USE_CUDA": True,
    "VERBOSE": True,
    "INPUT.SIZE": (224, 224), "INPUT.INTERPOLATION": "bilinear", "INPUT.TRANSFORMS": (),
    "INPUT.NO_TRANSFORM": False, "INPUT.PIXEL_MEAN": [0.485, 0.456, 0.406],
    "INPUT.PIXEL_STD": [0.229, 0.224, 0.225], "INPUT.CROP_PADDING": 4,
    "INPUT.RRCROP_SCALE": (0.08, 1.0), "INPUT.CUTOUT_N": 1, "INPUT.CUTOUT_LEN": 16,
    "INPUT.GN_MEAN": 0.0, "INPUT.GN_STD": 0.15, "INPUT.RANDAUGMENT_N": 2,
    "INPUT.RANDAUGMENT_M": 10, "INPUT.COLORJITTER_B": 0.4, "INPUT.COLORJITTER_C": 0.4,
    "INPUT.COLORJITTER_S": 0.4, "INPUT.COLORJITTER_H": 0.1, "INPUT.RGS_P": 0.2,
    "INPUT.GB_P": 0.5, "INPUT.GB_K": 21,
    "DATASET.ROOT": "", "DATASET.NAME": "", "DATASET.SOURCE_DOMAINS": (),
    "DATASET.TARGET_DOMAINS": (), "DATASET.NUM_LABELED": -1, "DATASET.NUM_SHOTS": -1,
    "DATASET.VAL_PERCENT": 0.1, "DATASET.STL10_FOLD": -1, "DATASET.CIFAR_C_TYPE": "",
    "DATASET.CIFAR_C_LEVEL": 1, "DATASET.ALL_AS_UNLABELED": False,
    "DATALOADER.NUM_WORKERS": 4, "DATALOADER.K_TRANSFORMS": 1, "DATALOADER.RETURN_IMG0": False,
    "DATALOADER.TRAIN_X.SAMPLER": "RandomSampler", "DATALOADER.TRAIN_X.BATCH_SIZE": 32,
    "DATALOADER.TRAIN_X.N_DOMAIN": 0, "DATALOADER.TRAIN_X.N_INS": 16,
    "DATALOADER.TRAIN_U.SAME_AS_X": True, "DATALOADER.TRAIN_U.SAMPLER": "RandomSampler",
    "DATALOADER.TRAIN_U.BATCH_SIZE": 32, "DATALOADER.TRAIN_U.N_DOMAIN": 0,
    "DATALOADER.TRAIN_U.N_INS": 16, "DATALOADER.TEST.SAMPLER": "SequentialSampler",
    "DATALOADER.TEST.BATCH_SIZE": 32,
    "MODEL.INIT_WEIGHTS": "", "MODEL.BACKBONE.NAME": "", "MODEL.BACKBONE.PRETRAINED": True,
    "MODEL.HEAD.NAME": "", "MODEL.HEAD.HIDDEN_LAYERS": (), "MODEL.HEAD.ACTIVATION": "relu",
    "MODEL.HEAD.BN": True, "MODEL.HEAD.DROPOUT": 0.0,
    "OPTIM.NAME": "adam", "OPTIM.LR": 0.0003, "OPTIM.WEIGHT_DECAY": 5e-4,
    "OPTIM.MOMENTUM": 0.9, "OPTIM.SGD_DAMPNING": 0, "OPTIM.SGD_NESTEROV": False,
    "OPTIM.RMSPROP_ALPHA": 0.99, "OPTIM.ADAM_BETA1": 0.9, "OPTIM.ADAM_BETA2": 0.999,
    "OPTIM.STAGED_LR": False, "OPTIM.NEW_LAYERS": (), "OPTIM.BASE_LR_MULT": 0.1,
    "OPTIM.LR_SCHEDULER": "single_step", "OPTIM.STEPSIZE": (-1,), "OPTIM.GAMMA": 0.1,
    "OPTIM.MAX_EPOCH": 10, "OPTIM.WARMUP_EPOCH": -1, "OPTIM.WARMUP_TYPE": "linear",
    "OPTIM.WARMUP_CONS_LR": 1e-5, "OPTIM.WARMUP_MIN_LR": 1e-5, "OPTIM.WARMUP_RECOUNT": True,
    "TRAIN.CHECKPOINT_FREQ": 0, "TRAIN.PRINT_FREQ": 10, "TRAIN.COUNT_ITER": "train_x",
    "TEST.EVALUATOR": "Classification", "TEST.PER_CLASS_RESULT": False,
    "TEST.COMPUTE_CMAT": False, "TEST.NO_TEST": False, "TEST.SPLIT": "test",
    "TEST.FINAL_MODEL": "last_step",
    "TRAINER.NAME": "",
}


def _leaves(node, prefix=""):
    for key, value in node.items():
        full = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            yield from _leaves(value, full + ".")
        else:
            yield full, value


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize("key", sorted(EXPECTED_DEFAULTS))
def test_every_spec_key_has_its_default_and_type(key):
    value = _get(get_cfg_default(), key)
    expected = EXPECTED_DEFAULTS[key]
    assert value == expected
    assert type(value) is type(expected)


def test_no_key_beyond_the_spec():
    assert dict(_leaves(get_cfg_default())).keys() == EXPECTED_DEFAULTS.keys()


def test_get_cfg_default_returns_independent_clones():
    a = get_cfg_default()
    a.OPTIM.LR = 1.0
    assert get_cfg_default().OPTIM.LR == 0.0003


def test_unknown_key_from_list_is_rejected():
    with pytest.raises(AssertionError, match="Non-existent key: OPTIM.FOO"):
        get_cfg_default().merge_from_list(["OPTIM.FOO", "1"])


def test_unknown_key_from_yaml_is_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("TRAINER:\n  COOP:\n    N_CTX: 4\n")
    with pytest.raises(KeyError, match="Non-existent config key: TRAINER.COOP"):
        get_cfg_default().merge_from_file(str(path))


def test_yacs_parses_literals_and_checks_types(tmp_path):
    cfg = get_cfg_default()
    path = tmp_path / "ok.yaml"
    path.write_text("OPTIM:\n  WARMUP_CONS_LR: 1e-5\n  LR: 0.002\nINPUT:\n  SIZE: (32, 32)\n")
    cfg.merge_from_file(str(path))
    cfg.merge_from_list(["DATASET.NAME", "a photo of a", "OPTIM.STEPSIZE", "[3, 5]"])
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5 and cfg.INPUT.SIZE == (32, 32)
    assert cfg.DATASET.NAME == "a photo of a" and cfg.OPTIM.STEPSIZE == (3, 5)
    with pytest.raises(ValueError, match="Type mismatch"):
        cfg.merge_from_list(["OPTIM.LR", "8"])


def test_frozen_cfg_is_immutable():
    cfg = get_cfg_default()
    cfg.freeze()
    with pytest.raises(AttributeError, match="immutable"):
        cfg.SEED = 1


def test_clean_cfg_keeps_name_and_own_node_only():
    cfg = get_cfg_default()
    cfg.TRAINER.COOP = CfgNode({"N_CTX": 16})
    cfg.TRAINER.COCOOP = CfgNode({"N_CTX": 4})
    cfg.TRAINER.NAME = "CoOp"
    clean_cfg(cfg, "CoOp")
    assert sorted(cfg.TRAINER.keys()) == ["COOP", "NAME"]
    assert cfg.TRAINER.COOP.N_CTX == 16
