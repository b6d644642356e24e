"""Upstream config spellings that differ from ours, translated to our keys with a printed note.

Why this exists: the CoOp-family repositories do not share one config schema. KgCoOp's code has
no config node of its own: its ``train.py`` reuses CoOp's node ``TRAINER.COOP``, adds
``TRAINER.COOP.W`` (the KgCoOp weight) and makes ``TRAINER.COOP.CTX_INIT`` a bool (any true
value meant "start from 'a photo of a'"), so its configs and scripts say
``TRAINER.COOP.CTX_INIT True`` and ``TRAINER.COOP.W 8.0``. Here KgCoOp has its own node
``TRAINER.KGCOOP`` and ``TRAINER.COOP`` is CoOp's (``CTX_INIT`` a phrase), so those spellings
would stop with a yacs type mismatch or an unknown key.

With ``--trainer KgCoOp``, :func:`translate_list` and :func:`translate_node` rewrite them, from
the config files and the command line alike, *before* the config is frozen and fingerprinted:
an upstream command line and the equivalent one written in our keys give the same config, the
same ``run.json`` fingerprint, hence the same run. Every rewrite is printed as a note. Every
other trainer's upstream keys are spelled as ours (README, "Upstream configs and keys"),
so nothing is rewritten for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from yacs.config import CfgNode as CN

__all__ = ["Rule", "UPSTREAM", "rules_for", "translate_list", "translate_node",
           "UpstreamKeyError"]

KGCOOP_PHRASE = "a photo of a"  # what upstream KgCoOp used whenever CTX_INIT was true


class UpstreamKeyError(ValueError):
    """An upstream setting that has no equivalent here (the message says what to do)."""


@dataclass(frozen=True)
class Rule:
    """How one upstream key maps here: to ``target`` (converted by ``convert``), or dropped
    (``target`` None) because the upstream trainer never read it; ``why`` is printed."""

    target: Optional[str]
    convert: Callable[[str, Any], Any]
    why: str


def _same(key: str, value: Any) -> Any:
    return value


def _as_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UpstreamKeyError(f"{key} must be an integer, got {value!r}")
    return value


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UpstreamKeyError(f"{key} must be a number, got {value!r}")
    return float(value)


def _as_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise UpstreamKeyError(f"{key} must be a string, got {value!r}")
    return value


def _kgcoop_ctx_init(key: str, value: Any) -> str:
    """Upstream: ``if ctx_init: ctx_init = "a photo of a"`` -- the value only switched it on."""
    if isinstance(value, str):
        return value  # not an upstream spelling (its key is a bool), but unambiguous
    return KGCOOP_PHRASE if value else ""


def _kgcoop_csc(key: str, value: Any) -> Any:
    if value:
        raise UpstreamKeyError(
            f"{key} True (class-specific contexts) has no equivalent in KgCoOp here: its context "
            "is shared by all classes, as in every published KgCoOp run (their scripts pass "
            "CSC False). Fix: drop the option, or pass TRAINER.COOP.CSC False")
    return value


_KGCOOP_READS = "here KgCoOp reads TRAINER.KGCOOP.*"
_MMRL_TASK = "the official code's top-level TASK is the trainer's own key here"


def _mmrl_task(key: str, value: Any) -> str:
    if value not in ("B2N", "FS", "CD", "auto"):
        raise UpstreamKeyError(f"{key} must be B2N, FS or CD, got {value!r}")
    return value

# trainer registry name -> upstream key (or "NODE.*" for a whole node) -> rule.
UPSTREAM: dict[str, dict[str, Rule]] = {
    "KgCoOp": {
        "TRAINER.COOP.N_CTX": Rule("TRAINER.KGCOOP.N_CTX", _as_int, _KGCOOP_READS),
        "TRAINER.COOP.CTX_INIT": Rule(
            "TRAINER.KGCOOP.CTX_INIT", _kgcoop_ctx_init,
            _KGCOOP_READS + f"; upstream CTX_INIT is a bool, True meaning {KGCOOP_PHRASE!r}"),
        "TRAINER.COOP.W": Rule("TRAINER.KGCOOP.W", _as_float, _KGCOOP_READS),
        "TRAINER.COOP.PREC": Rule("TRAINER.KGCOOP.PREC", _as_str, _KGCOOP_READS),
        "TRAINER.COOP.CSC": Rule(None, _kgcoop_csc,
                                 "KgCoOp's context is shared by all classes (CSC False)"),
        "TRAINER.COOP.CLASS_TOKEN_POSITION": Rule(
            None, _same, "upstream KgCoOp ignores it: its prompt always ends with the class name"),
        "TRAINER.COOP.ALPHA": Rule(None, _same, "declared by KgCoOp's train.py, read by no "
                                                "KgCoOp code"),
        "LOSS.*": Rule(None, _same, "ProGrad's LOSS node in KgCoOp's train.py, read by no "
                                    "KgCoOp code"),
    },
    "MMRL": {
        "TASK": Rule("TRAINER.MMRL.TASK", _mmrl_task, _MMRL_TASK),
        "TRAINER.MMRL.SCALE": Rule("TRAINER.MMRL.ALPHA", _as_float,
                                   "the official code's earlier name of ALPHA"),
    },
    "MMRLpp": {
        "TASK": Rule("TRAINER.MMRLPP.TASK", _mmrl_task, _MMRL_TASK),
        **{f"TRAINER.MMRLpp.{key}": Rule(f"TRAINER.MMRLPP.{key}", convert,
                                         "the node is the registry name upper-cased here")
           for key, convert in (("ALPHA", _as_float), ("BETA", _as_float),
                                ("REG_WEIGHT", _as_float), ("REP_LAYERS", _same),
                                ("REP_DIM", _as_int), ("N_REP_TOKENS", _as_int),
                                ("PROJ_LORA_DIM", _as_int), ("RES_LORA_DIM", _as_int),
                                ("PREC", _as_str))},
    },
}


def rules_for(trainer: str) -> dict[str, Rule]:
    """The rules of ``trainer`` (its registry name, or ``disakit.<Name>``); {} if none."""
    name = trainer[len("disakit."):] if trainer.startswith("disakit.") else trainer
    return UPSTREAM.get(name, {})


def _rule(rules: dict[str, Rule], key: str) -> Optional[Rule]:
    if key in rules:
        return rules[key]
    for pattern, rule in rules.items():
        if pattern.endswith(".*") and key.startswith(pattern[:-1]):
            return rule
    return None


def _apply(rule: Rule, key: str, value: Any, trainer: str, where: str
           ) -> tuple[Optional[tuple[str, Any]], str]:
    converted = rule.convert(key, value)
    if rule.target is None:
        note = f"{where}: upstream {trainer} key {key} {value!r} ignored ({rule.why})"
        return None, note
    note = (f"{where}: upstream {trainer} key {key} {value!r} -> {rule.target} "
            f"{converted!r} ({rule.why})")
    return (rule.target, converted), note


def translate_list(trainer: str, opts: list, where: str) -> tuple[list, list[str]]:
    """``KEY VALUE`` options with ``trainer``'s upstream keys rewritten; and the notes.

    Values are decoded as yacs decodes them (``"True"`` -> True, ``"8.0"`` -> 8.0); a
    rewritten value is passed on decoded, so yacs keeps it as is.
    """
    rules = rules_for(trainer)
    if not rules or len(opts) % 2:
        return list(opts), []
    out, notes = [], []
    for key, raw in zip(opts[0::2], opts[1::2]):
        rule = _rule(rules, key)
        if rule is None:
            out += [key, raw]
            continue
        pair, note = _apply(rule, key, CN._decode_cfg_value(raw), trainer, where)
        notes.append(note)
        if pair is not None:
            out += list(pair)
    return out, notes


def _leaves(node: CN, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for name, value in node.items():
        keys += _leaves(value, f"{prefix}{name}.") if isinstance(value, CN) else [prefix + name]
    return keys


def _pop(node: CN, key: str) -> Any:
    """Remove ``key`` from ``node`` and every sub-node it leaves empty; return its value."""
    parts = key.split(".")
    chain = [node]
    for part in parts[:-1]:
        chain.append(chain[-1][part])
    value = chain[-1].pop(parts[-1])
    for parent, part in zip(reversed(chain[:-1]), reversed(parts[:-1])):
        if len(parent[part]) == 0:
            del parent[part]
    return value


def _set(node: CN, key: str, value: Any) -> None:
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in node:
            node[part] = CN()
        node = node[part]
    node[parts[-1]] = value


def translate_node(trainer: str, node: CN, where: str) -> list[str]:
    """Rewrite ``trainer``'s upstream keys in a loaded config file in place; return the notes."""
    rules = rules_for(trainer)
    notes = []
    for key in _leaves(node) if rules else []:
        rule = _rule(rules, key)
        if rule is None:
            continue
        pair, note = _apply(rule, key, _pop(node, key), trainer, where)
        notes.append(note)
        if pair is not None:
            _set(node, *pair)
    return notes
