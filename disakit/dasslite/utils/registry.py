"""Name -> object registries (Dassl's ``dassl.utils.registry``).

Trainers, datasets and evaluators register themselves as an import side effect; builders look
them up by the name given in the config, so a new method is added without editing a dispatch
table.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List

from .tools import get_most_similar_str_to_a_from_b

__all__ = ["Registry", "check_availability"]


class Registry:
    """A named mapping from ``obj.__name__`` to ``obj``.

    Why: the config names classes by string (``TRAINER.NAME``), and registration by decorator
    keeps each class's declaration next to its code.

    Usage::

        TRAINER_REGISTRY = Registry("TRAINER")

        @TRAINER_REGISTRY.register()
        class CoOp(TrainerX): ...

        TRAINER_REGISTRY.register(CoOp)  # also works as a plain call
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._obj_map: Dict[str, Any] = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(
                'An object named "{}" was already registered '
                'in "{}" registry'.format(name, self._name)
            )
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Any:
        """Register ``obj`` under ``obj.__name__``; without ``obj``, return a decorator."""
        if obj is None:

            def wrapper(fn_or_class: Any) -> Any:
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper
        self._do_register(obj.__name__, obj, force=force)
        return obj

    def get(self, name: str) -> Any:
        """Return the object registered as ``name`` (``KeyError`` if there is none)."""
        if name not in self._obj_map:
            raise KeyError(
                'Object name "{}" does not exist '
                'in "{}" registry'.format(name, self._name)
            )
        return self._obj_map[name]

    def registered_names(self) -> List[str]:
        """All registered keys, in insertion order."""
        return list(self._obj_map.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map

    def __repr__(self) -> str:
        return f"Registry(name={self._name!r}, names={self.registered_names()})"


def check_availability(requested: str, available: Iterable[str]) -> None:
    """Raise ``ValueError`` naming the closest valid choice when ``requested`` is unknown.

    Why: a typo in ``--trainer`` or ``DATASET.NAME`` should fail before anything is built,
    with a hint (``do you mean [...]?``) instead of a bare ``KeyError``.
    """
    available = list(available)
    if requested not in available:
        psb_ans = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(
            "The requested one is expected "
            "to belong to {}, but got [{}] "
            "(do you mean [{}]?)".format(available, requested, psb_ans)
        )
