"""``dassl.config``: Dassl's defaults (the bundled engine's, plus the trainer nodes only Dassl
has)."""
from yacs.config import CfgNode as CN

from disakit.dasslite.config import get_cfg_default as _common_defaults

# Dassl 0.6.3's nodes for its own domain-adaptation / -generalisation and semi-supervised
# trainers (dassl/config/defaults.py); no prompt learner reads them.
DASSL_TRAINER_NODES = {
    "MCD": {"N_STEP_F": 4},
    "MME": {"LMDA": 0.1},
    "CDAC": {"CLASS_LR_MULTI": 10, "RAMPUP_COEF": 30, "RAMPUP_ITRS": 1000, "TOPK_MATCH": 5,
             "P_THRESH": 0.95, "STRONG_TRANSFORMS": ()},
    "SE": {"EMA_ALPHA": 0.999, "CONF_THRE": 0.95, "RAMPUP": 300},
    "M3SDA": {"LMDA": 0.5, "N_STEP_F": 4},
    "DAEL": {"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
    "CROSSGRAD": {"EPS_F": 1.0, "EPS_D": 1.0, "ALPHA_F": 0.5, "ALPHA_D": 0.5},
    "DDAIG": {"G_ARCH": "", "LMDA": 0.3, "CLAMP": False, "CLAMP_MIN": -1.0, "CLAMP_MAX": 1.0,
              "WARMUP": 0, "ALPHA": 0.5},
    "DAELDG": {"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
    "DOMAINMIX": {"TYPE": "crossdomain", "ALPHA": 1.0, "BETA": 1.0},
    "ENTMIN": {"LMDA": 1e-3},
    "MEANTEACHER": {"WEIGHT_U": 1.0, "EMA_ALPHA": 0.999, "RAMPUP": 5},
    "MIXMATCH": {"WEIGHT_U": 100.0, "TEMP": 2.0, "MIXUP_BETA": 0.75, "RAMPUP": 20000},
    "FIXMATCH": {"WEIGHT_U": 1.0, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()},
}


def get_cfg_default():
    cfg = _common_defaults()
    for node, values in DASSL_TRAINER_NODES.items():
        cfg.TRAINER[node] = CN(dict(values))
    return cfg


def clean_cfg(cfg, trainer):
    """Drop every trainer node but ``NAME`` and ``trainer``'s own."""
    for key in list(cfg.TRAINER.keys()):
        if key not in ("NAME", trainer.upper()):
            cfg.TRAINER.pop(key, None)
