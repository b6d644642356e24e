"""Adapting a real Dassl.pytorch to the installed torch: a small, announced compatibility layer.

Dassl.pytorch 0.6.3 (the version the CoOp family pins; it is not on PyPI) was written for
torch 1.x. On current torch it breaks where this toolkit's trainers meet it:

1. **Warm-up schedulers pass ``verbose``.** ``_BaseWarmupScheduler.__init__`` calls
   ``_LRScheduler.__init__(optimizer, last_epoch, verbose)``; torch removed ``verbose``, so every
   run with ``OPTIM.WARMUP_EPOCH > 0`` (all the family's configs) dies in ``build_trainer`` with
   ``TypeError: LRScheduler.__init__() takes from 2 to 3 positional arguments but 4 were given``.
   *Adapted:* the base ``__init__`` accepts ``verbose`` and no longer passes it on; the
   subclasses are untouched.
2. **Checkpoints.** Dassl's ``load_checkpoint`` is a bare ``torch.load``: since torch 2.6 it
   defaults to ``weights_only=True`` and refuses Dassl's own files (they pickle the warm-up
   scheduler's successor, a ``CosineAnnealingLR`` with its optimizer), so every ``--eval-only``
   and resume dies; with full unpickling it would run code from any file it is given.
   *Adapted, always:* ``load_checkpoint`` is replaced, wherever the name is bound
   (``dassl.utils.torchtools``, ``dassl.utils``, ``dassl.engine.trainer`` and any other loaded
   module that imported it), by this toolkit's own loader, which reads through
   :func:`disakit.runkit.safe_load.safe_torch_load` (``weights_only`` plus an allow-list of what
   Dassl pickles). Dassl's ``resume_from_checkpoint`` and ``load_pretrained_weights`` use it too.
3. **Scheduler state.** The warm-up wrapper inherits torch's ``load_state_dict``
   (``self.__dict__.update(state)``). Given this toolkit's plain-data state (``{"wrapper": ...,
   "successor": successor.state_dict()}``) it sets ``successor`` to a dict and the next step
   fails (``'dict' object has no attribute 'get_last_lr'``); given its own format it replaces the
   live successor by the unpickled copy, whose optimizer is a copy too, so after a resume the
   schedule no longer reaches the optimizer that trains. *Adapted:* the wrapper restores either
   format into its live successor (the bundled engine's own method), so a folder trained on
   one engine resumes on the other.

Each behaviour is probed on a throw-away optimizer, and only what fails is patched (the loader,
2, is needed on every torch, for safety). :func:`apply` runs once, called by the seam
(:mod:`disakit.dassl_api`) when it picks a real ``dassl``, and prints one line, e.g.::

    disakit: adapted Dassl 0.6.3 to torch 2.14: warm-up schedulers without 'verbose'; \
    checkpoints read with the safe loader; warm-up schedulers restore either engine's \
    scheduler state

(one line; wrapped here).

What Dassl writes is unchanged (its checkpoint format included). Not a patch, but related: the
toolkit's trainers bring their own checkpoint bookkeeping (the seam's ``RunBookkeeping``), so
resume points, random states and GPA state are the same on either engine.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Optional

import torch

__all__ = ["ADAPTATIONS", "adapt", "announcement", "applied"]

# What each adaptation is called in the announcement.
ADAPTATIONS = {
    "verbose": "warm-up schedulers without 'verbose'",
    "load_checkpoint": "checkpoints read with the safe loader",
    "scheduler_state": "warm-up schedulers restore either engine's scheduler state",
}

_applied: Optional[list[str]] = None  # the keys of ADAPTATIONS done, once adapt() has run


def applied() -> Optional[list[str]]:
    """The adaptations made in this process (keys of ``ADAPTATIONS``), or None before
    :func:`adapt` ran."""
    return None if _applied is None else list(_applied)


def adapt(announce: bool = True) -> list[str]:
    """Probe the importable ``dassl`` and patch what fails on this torch; once per process.

    Returns the keys of ``ADAPTATIONS`` that were applied, and (with ``announce``) prints the
    one-line announcement the first time.
    """
    global _applied
    if _applied is not None:
        return list(_applied)
    schedulers = importlib.import_module("dassl.optim.lr_scheduler")
    torchtools = importlib.import_module("dassl.utils.torchtools")
    done = []
    if _adapt_verbose(schedulers):
        done.append("verbose")
    if _adapt_load_checkpoint(torchtools):
        done.append("load_checkpoint")
    if _adapt_scheduler_state(schedulers):
        done.append("scheduler_state")
    _applied = done
    if announce and done:
        print(announcement(done), flush=True)
    return list(done)


def announcement(done: list[str]) -> str:
    """``disakit: adapted Dassl <version> to torch <major.minor>: <what>; <what>``."""
    version = getattr(sys.modules.get("dassl"), "__version__", "(unknown version)")
    torch_version = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    return (f"disakit: adapted Dassl {version} to torch {torch_version}: "
            + "; ".join(ADAPTATIONS[key] for key in done))


# ------------------------------------------------------------------------------ probes
def _throwaway_optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def _build_warmup(schedulers: Any) -> Any:
    """Dassl's constant warm-up over a cosine, as ``build_lr_scheduler`` builds it."""
    optimizer = _throwaway_optimizer()
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4)
    return schedulers.ConstantWarmupScheduler(optimizer, successor, 1, 1e-5)


def _warmup_builds(schedulers: Any) -> bool:
    try:
        _build_warmup(schedulers)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------------- adaptations
def _adapt_verbose(schedulers: Any) -> bool:
    base = getattr(schedulers, "_BaseWarmupScheduler", None)
    if base is None or _warmup_builds(schedulers):
        return False

    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super(base, self).__init__(optimizer, last_epoch)  # torch no longer takes `verbose`

    __init__.__qualname__ = f"{base.__qualname__}.__init__"
    original = base.__init__
    base.__init__ = __init__
    try:
        _build_warmup(schedulers)
    except TypeError as err:
        base.__init__ = original
        raise RuntimeError(
            f"disakit cannot adapt this Dassl's warm-up schedulers to torch {torch.__version__} "
            f"({err}); use the bundled engine (DASSL_BACKEND=dasslite)") from err
    return True


def _adapt_load_checkpoint(torchtools: Any) -> bool:
    from disakit.dasslite.utils.torchtools import load_checkpoint as safe_load_checkpoint

    original: Callable[..., Any] = torchtools.load_checkpoint
    if original is safe_load_checkpoint:
        return False
    # Any: the loop assigns ``load_checkpoint``, which ModuleType does not declare.
    modules: list[Any] = list(sys.modules.values())
    for module in modules:
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict) and namespace.get("load_checkpoint") is original:
            module.load_checkpoint = safe_load_checkpoint
    return True


def _state_restores_in_place(schedulers: Any) -> bool:
    """Whether Dassl's wrapper takes the bundled engine's state into its live successor."""
    from disakit.dasslite.optim import lr_scheduler as ours

    optimizer = _throwaway_optimizer()
    source = ours.ConstantWarmupScheduler(
        optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 4), 1, 1e-5)
    optimizer.step()
    source.step()
    target = _build_warmup(schedulers)
    successor = target.successor
    try:
        target.load_state_dict(source.state_dict())
    except Exception:  # noqa: BLE001 -- any failure means: adapt it
        return False
    return target.successor is successor and target.last_epoch == source.last_epoch


def _adapt_scheduler_state(schedulers: Any) -> bool:
    from disakit.dasslite.optim.lr_scheduler import _BaseWarmupScheduler as ours

    base = getattr(schedulers, "_BaseWarmupScheduler", None)
    if base is None or _state_restores_in_place(schedulers):
        return False
    base.load_state_dict = ours.load_state_dict  # both formats, into the live successor
    return True
