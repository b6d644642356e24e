"""Trainer settings (trainers/settings.py) and saved-key renames (``CHECKPOINT_KEYS``).

Every bundled trainer reads its ``TRAINER.<NODE>`` keys once, into a typed, validated settings
dataclass: built from the default config, they cover exactly the node's declared keys, and a
wrong type or an impossible value fails naming the full key and the fix, before CLIP loads.
DAPT's text context is saved as upstream DAPT's ``txt_ctx``: the same mapping is applied when
saving and undone on resume, ``load_model`` and ``MODEL.INIT_WEIGHTS``.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from conftest import toolkit_cfg

from disakit import bundle, trainers  # noqa: F401  (trainers: defines them)
from disakit.clipkit.random_clip import build_random_clip
from disakit.dassl_api import load_checkpoint
from disakit.trainers.base import DataFree, build_standalone, map_checkpoint_keys
from disakit.trainers.config import TRAINER_KEYS, ConfigError
from disakit.trainers.coop import CoOp, CoOpSettings
from disakit.trainers.promptsrc import PromptSRC
from disakit.trainers.settings import TrainerSettings, convert

CLASSNAMES = ["cat", "golden_retriever", "car"]
NODE_TRAINERS = sorted(name for name, cls in bundle.TRAINERS.items() if cls.CFG_NODE)


def default_cfg(trainer: str = "CoOp", *opts):
    return toolkit_cfg(trainer, *opts)


def field_keys(settings_cls) -> set[str]:
    """The leaves of the trainer's node its settings read."""
    keys = {f.metadata.get("key", f.name.upper()) for f in dataclasses.fields(settings_cls)}
    return {k for k in keys if "." not in k}


@pytest.fixture(scope="module")
def tiny():
    return build_random_clip("tiny", seed=0)


# ------------------------------------------------------------------ settings of every trainer
@pytest.mark.parametrize("name", sorted(bundle.TRAINERS))
def test_settings_of_every_bundled_trainer_build_from_the_default_config(name):
    trainer_cls = bundle.TRAINERS[name]
    settings = trainer_cls.SETTINGS.from_cfg(default_cfg(name))
    assert isinstance(settings, trainer_cls.SETTINGS)
    assert trainer_cls.CFG_NODE == trainer_cls.SETTINGS.NODE
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.prec = "fp32"  # type: ignore[misc]
    if trainer_cls.CFG_NODE is None:  # ZeroshotCLIP: no node, nothing to read
        assert dataclasses.fields(settings) == ()
        return
    node = TRAINER_KEYS[trainer_cls.CFG_NODE]
    assert field_keys(trainer_cls.SETTINGS) == set(node), "settings and TRAINER_KEYS differ"
    for field in dataclasses.fields(settings):  # the defaults, as typed values
        key = field.metadata.get("key", field.name.upper())
        if key in node:
            value = getattr(settings, field.name)
            default = node[key]
            assert value == (tuple(default) if isinstance(default, list) else default), key


@pytest.mark.parametrize("name", NODE_TRAINERS)
def test_a_wrong_type_of_any_key_names_the_key_and_the_fix(name):
    settings_cls = bundle.TRAINERS[name].SETTINGS
    for key in sorted(field_keys(settings_cls)):
        cfg = default_cfg(name)
        cfg.TRAINER[settings_cls.NODE][key] = None  # no field type accepts None
        with pytest.raises(ConfigError) as err:
            settings_cls.from_cfg(cfg)
        message = str(err.value)
        assert message.startswith(f"TRAINER.{settings_cls.NODE}.{key} must be "), message
        assert "got None" in message and "Fix: " in message, message


def test_values_are_converted_to_the_annotated_types():
    cfg = default_cfg("KgCoOp", "TRAINER.KGCOOP.W", 8.0)
    cfg.TRAINER.KGCOOP.W = 3  # an int where a float is declared (e.g. a user's own node)
    cfg.TRAINER.KGCOOP.N_CTX = "4"
    settings = bundle.TRAINERS["KgCoOp"].SETTINGS.from_cfg(cfg)
    assert settings.w == 3.0 and isinstance(settings.w, float)
    assert settings.n_ctx == 4
    assert convert("K", [6, 7.0, "8"], tuple[int, ...]) == (6, 7, 8)
    assert convert("K", "True", bool) is True
    for value, kind, what in ((True, int, "an integer"), (2.5, int, "an integer"),
                              (math.nan, float, "a finite number"), (1, bool, "True or False"),
                              (False, str, "a string"), ([1, "x"], tuple[int, ...], "a list of")):
        with pytest.raises(ConfigError, match=f"K must be {what}"):
            convert("K", value, kind)


@pytest.mark.parametrize("key,value,message", [
    ("TRAINER.DISA.MASK_RATIO", 1.5,
     "TRAINER.DISA.MASK_RATIO must be between 0.0 and 1.0, got 1.5"),
    ("TRAINER.DISA.SR_MODE", "full", "TRAINER.DISA.SR_MODE must be one of ['scl', 'logits', "
                                     "'none'], got 'full'"),
    ("TRAINER.DISA.FROZEN_TEMPLATES", "imagenet61", "TRAINER.DISA.FROZEN_TEMPLATES must be one "
                                                    "of"),
    ("TRAINER.TCP.ADAM_EPS", 0.0, "TRAINER.TCP.ADAM_EPS must be positive, got 0.0"),
    ("TRAINER.DAPT.PROTO_TRANSFORM", "val", "TRAINER.DAPT.PROTO_TRANSFORM must be one of"),
    ("TRAINER.MMRL.TASK", "XD", "TRAINER.MMRL.TASK must be one of"),
    ("TRAINER.IVLP.PROMPT_DEPTH_TEXT", 0, "TRAINER.IVLP.PROMPT_DEPTH_TEXT must be >= 1"),
    ("TRAINER.DPL.TEXT_TEMPLATE", "a photo", "TRAINER.DPL.TEXT_TEMPLATE must contain one '{}'"),
    ("TRAINER.COOP.PREC", "bf16", "TRAINER.COOP.PREC must be one of ['fp16', 'fp32', 'amp']"),
])
def test_an_impossible_value_fails_before_clip_loads_naming_the_key(key, value, message):
    trainer = {"DISA": "DiSa", "TCP": "TCP", "DAPT": "DAPT", "MMRL": "MMRL", "IVLP": "IVLP",
               "DPL": "DPL", "COOP": "CoOp"}[key.split(".")[1]]
    cfg = default_cfg(trainer, key, value)
    with pytest.raises(ConfigError) as err:
        build_standalone(cfg, None, CLASSNAMES)  # check_cfg fails first: CLIP is never touched
    assert str(err.value).startswith(message) and ". Fix: " in str(err.value), str(err.value)


def test_a_trainer_declares_settings_and_its_node_follows():
    assert CoOp.CFG_NODE == "COOP" and bundle.TRAINERS["ZeroshotCLIP"].CFG_NODE is None
    with pytest.raises(TypeError, match="declare SETTINGS only"):
        type("Mismatched", (CoOp,), {"CFG_NODE": "KGCOOP"})
    with pytest.raises(TypeError, match="reads no config node"):
        dataclasses.dataclass(frozen=True)(
            type("NoNode", (TrainerSettings,), {"__annotations__": {"x": "int"}})
        ).from_cfg(default_cfg())
    assert CoOpSettings.key("N_CTX") == "TRAINER.COOP.N_CTX"


def test_dpl_settings_resolve_the_custom_template_with_the_dataset():
    cfg = default_cfg("DPL", "TRAINER.DPL.TEXT_TEMPLATE", "custom", "DATASET.NAME", "EuroSAT")
    settings = bundle.TRAINERS["DPL"].SETTINGS.from_cfg(cfg)
    assert settings.template == "a centered satellite photo of {}."


# ------------------------------------------------------------------ standalone construction
def test_standalone_is_the_engines_construction_without_data(tiny):
    trainer = build_standalone(default_cfg("CoOp", "TRAINER.COOP.N_CTX", 4), tiny, CLASSNAMES)
    assert not hasattr(trainer, "dm") and trainer.lab2cname == dict(enumerate(CLASSNAMES))
    assert (trainer.start_epoch, trainer.epoch, trainer.batch_idx, trainer.num_batches) == (
        0, 0, 0, 1)
    assert trainer.device == torch.device("cpu") and trainer.get_model_names() == [
        "prompt_learner"]
    assert trainer.settings.n_ctx == 4
    zero_shot = build_standalone(default_cfg("ZeroshotCLIP"), tiny, CLASSNAMES)
    assert zero_shot.model_inference(torch.randn(2, 3, 224, 224)).shape == (2, 3)


# ------------------------------------------------------------------ saved-key renames
def test_map_checkpoint_keys_round_trips_and_refuses_collisions():
    renames = {"ctx": "txt_ctx"}
    state = {"ctx": torch.zeros(1), "vis_ctx": torch.ones(1)}
    saved = map_checkpoint_keys(state, renames, saving=True)
    assert list(saved) == ["txt_ctx", "vis_ctx"]
    assert map_checkpoint_keys(saved, renames, saving=False).keys() == state.keys()
    assert map_checkpoint_keys(state, {}, saving=True) is state
    with pytest.raises(ValueError, match="both"):
        map_checkpoint_keys({"ctx": 0, "txt_ctx": 1}, renames, saving=False)


def test_dapt_saves_txt_ctx_and_loads_it_back_everywhere(tiny, tmp_path):
    torch.manual_seed(0)
    source = build_standalone(default_cfg("DAPT"), tiny, CLASSNAMES)
    with torch.no_grad():
        source.model.prompt_learner.ctx.normal_()
    expected = {k: v.clone() for k, v in source.model.prompt_learner.state_dict().items()}
    source.save_model(0, str(tmp_path))
    path = tmp_path / "prompt_learner" / "model.pth.tar-1"
    assert set(load_checkpoint(str(path))["state_dict"]) == {"txt_ctx", "vis_ctx"}

    def fresh(*opts):
        torch.manual_seed(1)
        return build_standalone(default_cfg("DAPT", *opts), tiny, CLASSNAMES)

    def assert_loaded(trainer):
        state = trainer.model.prompt_learner.state_dict()
        assert set(state) == {"ctx", "vis_ctx"}
        assert all(torch.equal(state[k], v) for k, v in expected.items())

    evaluated = fresh()
    evaluated.load_model(str(tmp_path), epoch=1)  # load_model
    assert_loaded(evaluated)
    resumed = fresh()
    assert resumed.resume_model_if_exist(str(tmp_path)) == 1  # resume
    assert_loaded(resumed)
    assert_loaded(fresh("MODEL.INIT_WEIGHTS", str(path)))  # MODEL.INIT_WEIGHTS


def test_gpa_state_is_saved_under_the_saved_keys(tiny):
    class Renamed(PromptSRC):
        CHECKPOINT_KEYS = {"ctx": "text_context"}

    cfg = default_cfg("PromptSRC", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2,
                      "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2, "OPTIM.MAX_EPOCH", 2)
    trainer = Renamed(cfg, DataFree(tiny, tuple(CLASSNAMES), torch.device("cpu")))
    learner = trainer.model.prompt_learner
    trainer.gpa.accumulate(learner, 1)
    state = trainer.extra_checkpoint_state(trainer.MODEL_NAME)
    assert "text_context" in state["gpa_sum"] and "ctx" not in state["gpa_sum"]
    assert "text_context" in trainer.state_dict_for_checkpoint(trainer.MODEL_NAME)
    other = Renamed(cfg, DataFree(tiny, tuple(CLASSNAMES), torch.device("cpu")))
    other.on_checkpoint_loaded(state)
    assert set(other.gpa.sum) == set(learner.state_dict())
