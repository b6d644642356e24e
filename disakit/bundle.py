"""The toolkit's trainers and datasets, and their registration into a Dassl registry.

Why registration is a call and not an import side effect: inside a user's own CoOp / MaPLe /
PromptSRC checkout, their Dassl registries already hold *their* ``CoOp``, ``OxfordPets``...;
registering ours by decorator at import would raise ``KeyError`` there (Dassl refuses duplicate
names) or, forced, silently replace theirs. :func:`register` adds ours next to theirs: under our
own name where it is free, and under ``disakit.<Name>`` where it is taken -- and says so.

``train.py`` (and the tests) call ``register()`` once; so does the plugin entry point
(:mod:`disakit.plugin`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, TypeVar, Union

__all__ = ["TRAINERS", "DATASETS", "PREFIX", "bundled_trainer", "bundled_dataset", "register",
           "Registration"]

T = TypeVar("T")
TRAINERS: dict[str, Any] = {}
DATASETS: dict[str, Any] = {}
PREFIX = "disakit."


def bundled_trainer(cls: T) -> T:
    """Mark a trainer class as one of ours (registered by :func:`register`)."""
    TRAINERS[cls.__name__] = cls  # type: ignore[attr-defined]
    return cls


def bundled_dataset(cls: T) -> T:
    """Mark a dataset reader class as one of ours (registered by :func:`register`)."""
    DATASETS[cls.__name__] = cls  # type: ignore[attr-defined]
    return cls


@dataclass
class Registration:
    """What :func:`register` did: name -> the name it is registered under, and the clashes."""

    trainers: dict[str, str] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    clashes: list[str] = field(default_factory=list)


def _put(registry: Any, name: str, obj: Any) -> None:
    if hasattr(registry, "_do_register"):  # Dassl's and our Registry
        registry._do_register(name, obj)
    else:
        registry._obj_map[name] = obj


def _register_into(registry: Any, ours: dict[str, Any], wanted: Optional[Iterable[str]],
                   prefix: str, kind: str, done: dict[str, str], clashes: list[str]) -> None:
    names = list(ours) if wanted is None else list(wanted)
    unknown = [n for n in names if n not in ours]
    if unknown:
        raise KeyError(f"no bundled {kind} named {unknown}; the bundled {kind}s are "
                       f"{sorted(ours)}")
    for name in names:
        obj = ours[name]
        taken = name in registry.registered_names()
        if taken and registry.get(name) is obj:
            done[name] = name
            continue
        target = f"{prefix}{name}" if taken else name
        if target in registry.registered_names():
            if registry.get(target) is not obj:
                raise KeyError(f"cannot register our {kind} {name!r}: both {name!r} and "
                               f"{target!r} are taken in the {kind} registry")
        else:
            _put(registry, target, obj)
        if taken:
            clashes.append(f"{kind} {name!r} is already registered (yours is kept); ours is "
                           f"{target!r}")
        done[name] = target


def register(trainers: Union[str, Iterable[str], None] = "all",
             datasets: Union[str, Iterable[str], None] = "all", prefix: str = PREFIX,
             verbose: bool = True) -> Registration:
    """Register our trainers and datasets into the seam's registries (a real Dassl's, if used).

    ``trainers``/``datasets``: ``"all"``, a list of class names, or None for none. A name that
    is already taken by another class keeps it; ours is registered as ``prefix + name``.
    Idempotent. Returns (and with ``verbose`` prints) what was registered where.
    """
    from . import datasets as _datasets  # noqa: F401  (fills DATASETS)
    from . import trainers as _trainers  # noqa: F401  (fills TRAINERS)
    from .dassl_api import DATASET_REGISTRY, TRAINER_REGISTRY

    result = Registration()
    if trainers is not None:
        _register_into(TRAINER_REGISTRY, TRAINERS, None if trainers == "all" else trainers,
                       prefix, "trainer", result.trainers, result.clashes)
    if datasets is not None:
        _register_into(DATASET_REGISTRY, DATASETS, None if datasets == "all" else datasets,
                       prefix, "dataset", result.datasets, result.clashes)
    if verbose:
        for clash in result.clashes:
            print(f"disakit: {clash}")
    return result
