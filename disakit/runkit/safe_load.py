"""The one way this project reads a ``torch.save`` file: never by running code from it.

``torch.load(weights_only=False)`` unpickles arbitrary objects, so a crafted ``model.pth.tar-N``
(in a downloaded output folder, a shared cluster directory, an ``INIT_WEIGHTS`` file) would run
its payload the moment a run resumes or evaluates. Every checkpoint, cache and weights file is
therefore read with ``weights_only=True`` plus an explicit allow-list of the few classes that
legitimate files hold:

* our own files hold only tensors and plain Python data;
* a real Dassl (and the CoOp / CoCoOp / KgCoOp / MaPLe / PromptSRC repositories that save through
  it) pickles its warm-up scheduler's ``successor``: a ``torch.optim.lr_scheduler`` object that
  carries its optimizer (``SGD`` & co.), whose state is a ``collections.defaultdict`` (torch's
  unpickler fills only plain dicts, so it comes back as a ``dict``: nothing reads that copy of
  the optimizer, the live one is restored from the file's ``optimizer`` entry);
* ``val_result`` may be a numpy scalar.

Rebuilding those classes runs no code of the file's choosing (the unpickler only sets their
``__dict__`` / calls their own ``__setstate__``). Anything else is refused with
:class:`UnsafeCheckpointError`, naming the file and the offending global. A user who trusts a
file can opt in explicitly with the environment variable ``DISA_TRUST_CHECKPOINTS=1`` -- never
automatically.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Optional, Union

import torch

__all__ = ["TRUST_ENV", "UnsafeCheckpointError", "allowed_globals", "safe_torch_load"]

TRUST_ENV = "DISA_TRUST_CHECKPOINTS"

PathLike = Union[str, "os.PathLike[str]"]


class UnsafeCheckpointError(RuntimeError):
    """A file needs a class outside the allow-list to be unpickled; it was not loaded."""


def _optional(module: Any, names: tuple[str, ...]) -> list[Any]:
    return [getattr(module, name) for name in names if hasattr(module, name)]


def _defaultdict_as_dict(default_factory: Any = None, *args: Any) -> dict:
    """Unpickles a ``collections.defaultdict`` as a plain ``dict``.

    Why: a trained optimizer pickled inside a real Dassl's scheduler keeps its per-parameter state
    in a ``defaultdict``, and torch's weights-only unpickler refuses to fill any mapping but a
    plain ``dict`` (``Can only SETITEM for dict ...``). The default factory is dropped.
    """
    return {}


def allowed_globals() -> list[Any]:
    """The classes legitimate checkpoints pickle (ours need none; real Dassl's need these)."""
    import collections

    import torch.optim as optim
    import torch.optim.lr_scheduler as sched

    allowed: list[Any] = [(_defaultdict_as_dict, "collections.defaultdict"),
                          collections.OrderedDict, dict, set, frozenset]
    allowed += _optional(sched, ("LRScheduler", "_LRScheduler", "StepLR", "MultiStepLR",
                                 "CosineAnnealingLR", "ExponentialLR", "LambdaLR"))
    allowed += _optional(optim, ("SGD", "Adam", "AdamW", "RMSprop", "RAdam", "Adagrad"))
    try:  # a numpy float/int stored as val_result
        import numpy as np

        core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
        allowed += [np.dtype, core.multiarray.scalar]
        allowed += [getattr(np.dtypes, n) for n in ("Float64DType", "Float32DType", "Int64DType")
                    if hasattr(getattr(np, "dtypes", None), n)]
    except (ImportError, AttributeError):
        pass
    return allowed


def _trusted_by_user() -> bool:
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


# torch words a refused class in two ways: "Unsupported global: GLOBAL mod.Name" (a class not on
# the allow-list) and "unsupported GLOBAL mod.name whose module mod is blocked" (modules such as
# os/posix/subprocess that torch never admits).
_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)")


def _offending_global(err: BaseException) -> Optional[str]:
    match = _GLOBAL.search(str(err))
    return match.group(1) if match else None


def safe_torch_load(path: PathLike, map_location: Any = "cpu", what: str = "checkpoint") -> Any:
    """``torch.load`` that never executes code from ``path`` (see the module docstring).

    Raises :class:`UnsafeCheckpointError` for a file that needs a class outside the
    allow-list (it says which, and how to opt in when the file is trusted). Other errors
    (truncated or corrupt files) propagate as ``torch.load`` raises them.
    """
    path = Path(path)
    if _trusted_by_user():
        print(f"Loading {what} {path} with full unpickling ({TRUST_ENV} is set)")
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            try:
                return torch.load(path, map_location=map_location, weights_only=True)
            except UnicodeDecodeError:  # a Python 2 pickle
                return torch.load(path, map_location=map_location, weights_only=True,
                                  encoding="latin1")
    except pickle.UnpicklingError as err:
        offending = _offending_global(err)
        if offending is None:  # not a forbidden class: a corrupt or non-torch file
            raise
        raise UnsafeCheckpointError(
            f"Refusing to load {what} {path}: unpickling it needs "
            f"{offending}, which is not a class that prompt-learning "
            f"checkpoints hold, so loading it could run code from the file. If you trust this "
            f"file (you wrote it, or got it from its authors), load it with {TRUST_ENV}=1 in the "
            f"environment; otherwise delete it."
        ) from None
