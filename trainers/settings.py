"""Trainer settings: a trainer's ``cfg.TRAINER.<NODE>`` keys read, typed and validated once.

Why: models and losses should not read yacs nodes (untyped, unchecked, spelled per trainer), and
a wrong value should fail before CLIP loads, naming the key and the fix. So every trainer
declares ``SETTINGS``, a frozen dataclass derived from :class:`TrainerSettings` whose fields are
its node's keys lower-cased (field ``n_ctx`` is ``TRAINER.COOP.N_CTX``; ``setting("KEY")`` reads
another leaf or a full path such as ``DATASET.NAME``). :meth:`TrainerSettings.from_cfg` converts
each value to its field's annotation (``int``, ``float``, ``bool``, ``str``, a ``Literal`` of
choices, ``tuple[int, ...]``), then calls :meth:`TrainerSettings.validate` (ranges,
combinations). The trainer base builds them in ``check_cfg`` and serves them as
``trainer.settings`` (docs/architecture.md#adding-a-method).

The defaults are not here: they live once, in :data:`trainers.config.TRAINER_KEYS`.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from typing import Any, ClassVar, Literal, Optional, TypeVar

from disakit.clipkit.precision import Prec
from disakit.trainers.config import TRAINER_KEYS, ConfigError

__all__ = ["TrainerSettings", "PromptSettings", "setting", "convert"]

S = TypeVar("S", bound="TrainerSettings")


def setting(key: str) -> Any:
    """A field read from ``key`` instead of its upper-cased name: another leaf of the node, or
    a full path from the config root (it contains a dot), e.g. ``setting("DATASET.NAME")``."""
    return dataclasses.field(metadata={"key": key})


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """Base of every trainer's settings; without fields (ZeroshotCLIP has no node)."""

    NODE: ClassVar[Optional[str]] = None  # the node under TRAINER, e.g. "COOP"

    @classmethod
    def key(cls, name: str) -> str:
        """The full config key of ``name``: ``TRAINER.<NODE>.<name>``, or ``name`` itself when it
        is already a full path."""
        if "." in name:
            return name
        if cls.NODE is None:
            raise TypeError(f"{cls.__name__} reads no config node: a trainer's SETTINGS is a "
                            "subclass with NODE = '<its node under TRAINER>' "
                            "(docs/architecture.md#adding-a-method)")
        return f"TRAINER.{cls.NODE}.{name}"

    @classmethod
    def from_cfg(cls: type[S], cfg: Any) -> S:
        """Read every field from ``cfg``, convert it to its annotated type, then ``validate``.

        Raises :class:`~trainers.config.ConfigError` naming the full key and the fix.
        """
        hints = typing.get_type_hints(cls)
        values = {}
        for field in dataclasses.fields(cls):
            key = cls.key(field.metadata.get("key", field.name.upper()))
            values[field.name] = convert(key, _lookup(cfg, key), hints[field.name])
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Checks beyond the types (ranges, combinations); a subclass extends it (calling
        ``super().validate()``) and raises :meth:`error` for what is wrong."""

    def error(self, name: str, problem: str, fix: str) -> ConfigError:
        """``<full key> <problem>. Fix: <fix>`` for what ``validate`` finds wrong."""
        return ConfigError(f"{self.key(name)} {problem}. Fix: {fix}")

    def fix(self, name: str, what: str) -> str:
        """A fix suggestion: give ``what``, e.g. the key's default on the command line."""
        return _fix(self.key(name), what)


@dataclasses.dataclass(frozen=True)
class PromptSettings(TrainerSettings):
    """What every prompt learner's node has: ``PREC`` (fp16, fp32 or amp)."""

    prec: Prec


# -------------------------------------------------------------------------------- conversion
def convert(key: str, value: Any, kind: Any) -> Any:
    """``value`` of config key ``key`` as ``kind`` (a field annotation), or a ConfigError."""
    origin = typing.get_origin(kind)
    if origin is Literal:
        choices = typing.get_args(kind)
        if isinstance(value, str) and value in choices:
            return value
        raise ConfigError(f"{key} must be one of {list(choices)}, got {value!r}. "
                          f"Fix: {_fix(key, 'one of them')}")
    if origin is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(value, (list, tuple)):
            try:
                return tuple(convert(key, v, item) for v in value)
            except ConfigError:
                pass
        raise ConfigError(f"{key} must be a list of {_NAMES[item]}s, got {value!r}. "
                          f"Fix: {_fix(key, f'a list of {_NAMES[item]}s')}")
    if kind not in _CONVERTERS:
        raise TypeError(f"setting {key}: unsupported field type {kind!r} (use int, float, bool, "
                        "str, a Literal of strings or tuple[int, ...])")
    converted = _CONVERTERS[kind](value)
    if converted is None:
        raise ConfigError(f"{key} must be {_ARTICLE[kind]}, got {value!r} "
                          f"({type(value).__name__}). Fix: {_fix(key, _ARTICLE[kind])}")
    return converted


def _to_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _to_float(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return None
    number: Optional[float] = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    return number if number is not None and math.isfinite(number) else None


def _to_bool(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _to_str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


_CONVERTERS: dict[Any, Any] = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}
_NAMES = {int: "integer", float: "number", bool: "True or False", str: "text"}
_ARTICLE = {int: "an integer", float: "a finite number", bool: "True or False", str: "a string"}


def _lookup(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if part not in node:
            raise ConfigError(f"{key} is missing from the config. Fix: "
                              f"{_fix(key, 'it a value')} (the toolkit's keys and defaults are "
                              "TRAINER_KEYS in trainers/config.py)")
        node = node[part]
    return node


def _fix(key: str, what: str) -> str:
    """``give <what>, e.g. `<key> <default>` (the default), ...``."""
    parts = key.split(".")
    default = (TRAINER_KEYS.get(parts[1], {}).get(parts[2])
               if len(parts) == 3 and parts[0] == "TRAINER" else None)
    if default is None:
        return f"give {what} among the KEY VALUE options or in the config file"
    shown = str(default)
    if isinstance(default, str) and not re.fullmatch(r"[\w.+-]+", default):
        shown = repr(default)  # quoted for the shell: '' or 'a photo of a'
    return (f"give {what}, e.g. `{key} {shown}` (the default) among the KEY VALUE options or "
            "in the config file")
