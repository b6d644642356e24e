"""Every bundled trainer's ``TRAINER.<NAME>.*`` config keys, declared in one place.

``extend_cfg`` adds them (and ``DATASET.SUBSAMPLE_CLASSES``, the ImageFolder reader's
``DATASET_KEYS`` and ``MODEL.GRAD_CHECKPOINTING``) to the engine defaults before any YAML is
merged, because yacs rejects keys that do not exist yet. Each trainer reads its node once into
its settings dataclass (``trainers/settings.py``); the defaults live only here. The node name
is the trainer's registry name upper-cased (``clean_cfg`` relies on it). Documented in
docs/methods/; float options have float defaults so that YAML values type-check (write ``8.0``,
not ``8``).
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from typing import Any

import yaml
from yacs.config import CfgNode as CN

TRAINER_KEYS: dict[str, dict[str, Any]] = {
    "COOP": {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16",
             "CLASS_TOKEN_POSITION": "end"},
    "COCOOP": {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"},
    "KGCOOP": {"N_CTX": 4, "CTX_INIT": "a photo of a", "W": 8.0, "PREC": "fp16"},
    "MAPLE": {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH": 9},
    "IVLP": {"N_CTX_VISION": 2, "N_CTX_TEXT": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
             "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9},
    "VPT": {"N_CTX_VISION": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
            "PROMPT_DEPTH_VISION": 1},
    "PROMPTSRC": {"N_CTX_VISION": 4, "N_CTX_TEXT": 4, "CTX_INIT": "a photo of a",
                  "PREC": "fp16", "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9,
                  "TEXT_LOSS_WEIGHT": 25, "IMAGE_LOSS_WEIGHT": 10, "GPA_MEAN": 15,
                  "GPA_STD": 1},
    "DAPT": {"TXT_NUM_TOKENS": 16, "VIS_NUM_TOKENS": 16, "VIS_DROPOUT": 0.0, "VIS_BETA": 0.1,
             "TXT_BETA": 0.1, "TXT_RBF_T": 2.0, "PROTOTYPE_GEN": False, "PREC": "fp16",
             "PROTO_TRANSFORM": "train", "PROTO_AUTO": True},
    "DPL": {"N_CTX_TEXT": 4, "N_CTX_VISION": 4, "PROMPT_DEPTH_TEXT": 9,
            "PROMPT_DEPTH_VISION": 9, "MODALITY": "both", "TEXT_TEMPLATE": "a photo of a {}.",
            "I2P": "gated", "P2I": "full", "P2P": "full", "PROMPT_UPDATE": "residual",
            "GATE_INIT": 0.0, "GATE_PER_HEAD": True, "PREC": "fp16"},
    # TCP (docs/methods/tcp.md): "" templates mean the dataset's entry of TCP's tables.
    "TCP": {"N_CTX": 4, "CTX_INIT": "", "N_CLASS_TOKENS": 4, "CLASS_TOKEN_LAYER": 8,
            "TEMPLATE": "", "KNOWLEDGE_TEMPLATE": "", "W": 8.0, "ADAM_EPS": 0.001,
            "PREC": "fp16"},
    "DISA": {"N_CTX_TEXT": 4, "N_CTX_VISION": 4, "PROMPT_DEPTH_TEXT": 9,
             "PROMPT_DEPTH_VISION": 9, "CTX_INIT": "a photo of a", "PREC": "fp16",
             "FROZEN_TEMPLATES": "imagenet60", "SR_MODE": "scl", "SR_LOGITS_WEIGHT": 1.0,
             "TEXT_LOSS_WEIGHT": 25.0, "IMAGE_LOSS_WEIGHT": 10.0, "CIR_WEIGHT": 1.0,
             "CIR_KL": "forward", "CIR_REDUCTION": "numel", "CIR_USE_MASK": True,
             "MASK_RATIO": 0.25, "MASK_FILL": "grey", "MASK_SALIENCY": "prompted",
             "MASK_TEXT": "gt", "MASK_PROB": 1.0, "DIR_WEIGHT": 1.0, "DIR_FORM": "cosine",
             "DIR_TAU": 0.01, "DIR_PROTO_NORMALIZE": True, "DIR_PROTO_TRANSFORM": "test",
             "GPA": True, "GPA_MEAN": 15.0, "GPA_STD": 1.0},
    # MMRL / MMRL++ (docs/methods/mmrl.md, docs/methods/mmrlpp.md). REP_LAYERS are 1-indexed;
    # TASK picks the inference logits (auto, B2N, FS, CD) in place of upstream's top-level TASK.
    "MMRL": {"ALPHA": 0.7, "REG_WEIGHT": 1.0, "REP_LAYERS": [6, 7, 8, 9, 10, 11, 12],
             "REP_DIM": 512, "N_REP_TOKENS": 5, "PREC": "fp16", "TASK": "auto"},
    "MMRLPP": {"ALPHA": 0.7, "BETA": 0.9, "REG_WEIGHT": 1.0,
               "REP_LAYERS": [6, 7, 8, 9, 10, 11, 12], "REP_DIM": 512, "N_REP_TOKENS": 5,
               "PROJ_LORA_DIM": 64, "RES_LORA_DIM": 4, "PREC": "fp16", "TASK": "auto"},
}


# The generic ImageFolder reader's keys (datasets/imagefolder.py; DATASETS.md, "Bring your own
# dataset"): DIR = folder under DATASET.ROOT (or absolute) with one sub-folder per class;
# SPLIT_FILE = a CoOp split JSON (relative to DIR or absolute; "" = train/ val/ test/ folders or
# a generated split); SPLIT_FRACTIONS = train, val shares of that generated split (test = rest);
# SPLIT_SEED = its seed (fixed, so every run seed uses the same split).
DATASET_KEYS: dict[str, Any] = {"DIR": "", "SPLIT_FILE": "", "SPLIT_FRACTIONS": (0.5, 0.2),
                                "SPLIT_SEED": 1}


def extend_cfg(cfg: CN) -> None:
    """Add the toolkit's keys to an engine default config (docs/engine.md#configuration)."""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    cfg.MODEL.GRAD_CHECKPOINTING = False  # recompute block activations in backward (exact)
    for key, value in DATASET_KEYS.items():
        cfg.DATASET[key] = value
    for node, keys in TRAINER_KEYS.items():
        cfg.TRAINER[node] = CN(dict(keys))


class ConfigError(ValueError):
    """A user-facing config problem (unknown key, wrong type); the message says the fix."""


def all_keys(cfg: CN, prefix: str = "") -> list[str]:
    """Every leaf key of ``cfg`` as a dotted path, e.g. ``TRAINER.COOP.N_CTX``."""
    keys = []
    for name, value in cfg.items():
        full = f"{prefix}{name}"
        keys.extend(all_keys(value, full + ".") if isinstance(value, CN) else [full])
    return keys


def closest_keys(cfg: CN, key: str, n: int = 3) -> list[str]:
    """Valid keys most similar to ``key``: same-leaf matches first, then whole-path matches."""
    import difflib

    candidates = all_keys(cfg)
    leaf = key.rsplit(".", 1)[-1]
    same_leaf = [k for k in candidates if k.rsplit(".", 1)[-1] == leaf and k != key]
    similar = difflib.get_close_matches(key, candidates, n=n, cutoff=0.5)
    return list(dict.fromkeys(same_leaf + similar))[:n]


# Keys that must hold a positive, finite number (yacs checks only the type).
POSITIVE_KEYS = ("OPTIM.LR",)
_MISMATCH = re.compile(r"with values \((.*) vs\. (.*)\) for config key: (\S+)")


def _positive_problem(key: str, value: Any, where: str = "") -> str | None:
    """Why ``value`` is no valid ``key`` (see :data:`POSITIVE_KEYS`), or None if it is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isfinite(number) and number > 0:
        return None
    where = f" in {where}" if where else ""
    return (f"{key} must be a positive, finite number, got {value}{where}. Fix: set it, e.g. "
            f"`{key} 0.002` among the KEY VALUE options or `LR: 0.002` under `OPTIM:` in the "
            "config file")


def check_values(cfg: CN) -> None:
    """Reject values yacs lets through (same type, impossible value), e.g. ``OPTIM.LR -1.0``
    or ``.nan`` in a YAML file: they would train silently to NaN or to nothing."""
    for key in POSITIVE_KEYS:
        node = cfg
        for part in key.split("."):
            node = node[part]
        problem = _positive_problem(key, node)
        if problem:
            raise ConfigError(problem)


def check_config_file(path: str, what: str) -> None:
    """Fail with the file, the line and the fix when a config YAML is missing or malformed.

    Why: yacs lets ``FileNotFoundError`` and yaml's parser errors out as tracebacks, and a
    file that is not a mapping fails with an unrelated ``AttributeError``.
    """
    what = what if path in what else f"{what} ({path})"
    if not os.path.isfile(path):
        why = "is a directory, not a YAML file" if os.path.isdir(path) else "does not exist"
        raise ConfigError(f"{what}: the file {why}. Fix: check the path (the bundled configs "
                          "are configs/trainers/<Trainer>/*.yaml and configs/datasets/*.yaml)")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{what}: malformed YAML{where}: {problem}. Fix: correct that line "
                          "(nested keys are indented under their section, e.g. "
                          "'OPTIM:' then '  LR: 0.002')") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what}: cannot read the file ({err}). Fix: make it a readable "
                          "UTF-8 YAML file") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{what}: the file holds a YAML {type(data).__name__}, not config "
                          "sections. Fix: write KEY: value lines such as 'OPTIM:' then "
                          "'  LR: 0.002'")


def check_output_dir(path: str) -> None:
    """Create the output folder and check that a file can be written in it.

    Why: otherwise the logger fails with a bare ``NotADirectoryError``/``PermissionError``
    traceback, or training runs and only the first checkpoint save fails.
    """
    if not path:
        return
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as err:
        blocker = next((p for p in _ancestors(path) if os.path.exists(p)), None)
        detail = (f"; {blocker} is a file, not a folder"
                  if blocker and not os.path.isdir(blocker) else "")
        raise ConfigError(f"cannot write the output directory {path} (--output-dir, "
                          f"OUTPUT_DIR): {err.strerror or err}{detail}. Fix: pass a writable "
                          "folder, e.g. --output-dir output/my_run") from None


def _ancestors(path: str) -> list[str]:
    """``path`` and its parents, deepest first."""
    path, out = os.path.abspath(path), []
    while True:
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            return out
        path = parent


def merge_checked(cfg: CN, source: str | list, what: str, trainer: str = "") -> None:
    """``merge_from_file`` / ``merge_from_list`` with errors that name the key and the fix.

    ``trainer`` (the run's trainer name): its upstream spellings are translated first, with a
    printed note (e.g. KgCoOp's ``TRAINER.COOP.CTX_INIT True``; see :mod:`trainers.upstream`).
    """
    from disakit.trainers.upstream import UpstreamKeyError, translate_list, translate_node

    if isinstance(source, str):
        check_config_file(source, what)
    try:
        if isinstance(source, str):
            with open(source, "r", encoding="utf-8") as f:
                loaded = cfg.load_cfg(f)  # what merge_from_file does, with a translation step
            notes = translate_node(trainer, loaded, what)
        else:
            source, notes = translate_list(trainer, list(source), what)
        for note in notes:
            print(f"Note: {note}")
        if isinstance(source, str):
            cfg.merge_from_other_cfg(loaded)
        else:
            cfg.merge_from_list(source)
    except UpstreamKeyError as err:
        raise ConfigError(f"{err} (in {what})") from None
    except (KeyError, AssertionError) as err:
        text = str(err.args[0]) if err.args else str(err)
        if "odd length" in text:
            raise ConfigError(f"{what} must be KEY VALUE pairs, got {list(source)}; put flags "
                              "such as --eval-only before the first KEY") from err
        if "Non-existent" not in text:
            raise
        key = text.split(":", 1)[1].strip()
        raise ConfigError(
            f"unknown config key {key!r} in {what}; closest valid keys: "
            f"{closest_keys(cfg, key) or 'none'}"
        ) from err
    except ValueError as err:
        mismatch = _MISMATCH.search(str(err))
        if mismatch and mismatch.group(3) in POSITIVE_KEYS:
            problem = _positive_problem(mismatch.group(3), mismatch.group(2), what)
            if problem:
                raise ConfigError(problem) from err
        raise ConfigError(f"{err} (in {what}; write floats with a decimal point, "
                          "e.g. 8.0)") from err
