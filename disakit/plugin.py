"""DiSa and the bundled baselines inside *your* CoOp / CoCoOp / KgCoOp / MaPLe / PromptSRC checkout.

Two lines in your ``train.py``; then ``--trainer DiSa`` runs with your scripts, your datasets
and your Dassl::

    import disakit.plugin            # top of train.py
    ...
    def extend_cfg(cfg):
        ...                          # your own nodes, unchanged
        disakit.plugin.extend_cfg(cfg)   # last line: our TRAINER.<NAME> nodes + registration

For a subset, call ``disakit.plugin.use(trainers=["DiSa"])`` after the import (``datasets=None``
leaves your dataset registry untouched).

Why registration happens in :func:`extend_cfg` and not at import: Dassl's registries refuse a
second object under a taken name (``KeyError: An object named "CoOp" was already
registered``). Your ``train.py`` imports its own trainers and datasets (``import
trainers.coop``) *after* the line at the top, so if the import registered ours, your own
``CoOp`` or ``EuroSAT`` would fail to register. ``extend_cfg(cfg)`` runs inside
``setup_cfg``, after every import of your ``train.py``: by then your registry is complete, and
ours are added next to yours (:func:`disakit.bundle.register`): under our own name where it is
free (``DiSa``, ``DPL``, ...) and as ``disakit.<Name>`` where it is yours (your ``CoOp`` stays
``CoOp``, ours is ``--trainer disakit.CoOp``). What went where is printed once.

Why only missing config keys are added: your trainers read your nodes (``TRAINER.COOP`` of a
KgCoOp checkout has ``W`` and a bool ``CTX_INIT``); replacing them would change your runs. Our
trainers read ``TRAINER.<their node>`` (``TRAINER.DISA``, ...); where you already define that
node, yours is kept, the keys it lacks are added, and any kept value that differs from our
default is reported (our trainer then reads your value).

Which CLIP: ours is always the installed ``openai-clip`` distribution, loaded under a private
name (:mod:`disakit.clipkit.compat`); the ``clip/`` folder your repository ships is never
imported by us, and your trainers keep using it.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from disakit.bundle import PREFIX, Registration

__all__ = ["use", "register", "extend_cfg", "PluginReport", "CONFIGS", "config_files"]

Names = Union[str, Iterable[str], None]

CONFIGS = Path(__file__).resolve().parent / "configs"  # configs/trainers/<Trainer>/*.yaml

_selection: dict[str, Any] = {"trainers": "all", "datasets": "all", "prefix": PREFIX}
_reported = False


@dataclass
class PluginReport:
    """What :func:`extend_cfg` did to your Dassl and your config."""

    registration: Registration
    added: list[str] = field(default_factory=list)      # config keys (or whole nodes) added
    kept: list[str] = field(default_factory=list)       # config keys that were yours already
    differs: list[str] = field(default_factory=list)    # kept keys whose value is not our default
    clip: str = ""                                      # the CLIP package our code uses

    def lines(self) -> list[str]:
        """The printed report."""
        reg = self.registration
        out = ["disakit.plugin: our trainers and datasets in your Dassl registries"]
        for kind, done in (("trainers", reg.trainers), ("datasets", reg.datasets)):
            if done:
                out.append(f"  {kind}: " + ", ".join(
                    n if n == target else f"{target} (your {n} is kept)"
                    for n, target in sorted(done.items())))
        if self.added:
            out.append("  config added: " + ", ".join(self.added))
        if self.kept:
            out.append("  config kept as yours: " + ", ".join(self.kept))
        for line in self.differs:
            out.append(f"  note: {line}")
        if self.clip:
            out.append(f"  CLIP for our trainers: {self.clip}")
        return out


def use(trainers: Names = "all", datasets: Names = "all", *, prefix: str = PREFIX) -> None:
    """Choose what :func:`extend_cfg` registers: ``"all"``, a list of class names, or None.

    Why a separate call: it can sit anywhere in ``train.py`` (e.g. right after the import)
    because it registers nothing by itself -- registration waits until your own trainers and
    datasets are registered (see the module docstring). ``use(trainers=["DiSa"])`` also adds
    only DiSa's config node. ``prefix`` names ours where a name is yours (default
    ``"disakit."``).
    """
    _selection.update(trainers=_names(trainers), datasets=_names(datasets), prefix=prefix)


def _names(value: Names) -> Union[str, list[str], None]:
    if value is None or value == "all":
        return value
    if isinstance(value, str):
        return [value]
    return list(value)


def register(*, verbose: bool = False) -> Registration:
    """Register the selected trainers and datasets (:func:`use`) into the Dassl in use, now.

    :func:`extend_cfg` calls it; call it yourself only where no config is extended, and only
    after your own trainers and datasets are imported. Idempotent.
    """
    from disakit import bundle, dassl_api

    if dassl_api.BACKEND != "dassl" and "dassl" in sys.modules:
        raise RuntimeError(
            "disakit.plugin: your train.py runs on Dassl, but DASSL_BACKEND=dasslite sends our "
            "trainers to disakit's bundled engine, where your build_trainer cannot see them. "
            "Fix: unset DASSL_BACKEND")
    return bundle.register(trainers=_selection["trainers"], datasets=_selection["datasets"],
                           prefix=_selection["prefix"], verbose=verbose)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    from yacs.config import CfgNode as CN

    out: dict[str, Any] = {}
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, CN):
            out.update(_leaves(value, path + "."))
        else:
            out[path] = value
    return out


def _our_additions(selected_nodes: Optional[set[str]]) -> dict[str, Any]:
    """Every key our ``extend_cfg`` adds to the engine defaults (path -> default), restricted to
    the selected trainers' ``TRAINER.<NODE>`` nodes when ``selected_nodes`` is given."""
    from disakit.dassl_api import get_cfg_default
    from disakit.trainers.config import extend_cfg as our_extend_cfg

    base = get_cfg_default()
    extended = base.clone()
    our_extend_cfg(extended)
    before = _leaves(base)
    added = {k: v for k, v in _leaves(extended).items() if k not in before}
    if selected_nodes is None:
        return added
    return {k: v for k, v in added.items()
            if not k.startswith("TRAINER.") or k.split(".")[1] in selected_nodes}


def _selected_nodes(registration: Registration) -> Optional[set[str]]:
    if _selection["trainers"] == "all":
        return None
    from disakit.bundle import TRAINERS

    nodes = {getattr(TRAINERS[name], "CFG_NODE", None) for name in registration.trainers}
    return {n for n in nodes if n}


def _group(keys: list[str], whole: set[str]) -> list[str]:
    """``TRAINER.DISA`` for a node added whole, else the keys themselves; in order."""
    out: list[str] = []
    for key in keys:
        node = ".".join(key.split(".")[:2])
        shown = node if node in whole else key
        if shown not in out:
            out.append(shown)
    return out


def extend_cfg(cfg: Any, *, verbose: bool = True) -> PluginReport:
    """Add our config keys that ``cfg`` lacks, and register our trainers and datasets.

    Call it as the last line of your ``extend_cfg(cfg)``. Nothing you define is changed:
    a node or key you already have is kept (and listed), only missing ones are added, and a
    kept key whose value differs from our default is reported, because our trainer will read
    yours. Registration is :func:`register` (the :func:`use` selection). The report is
    printed once per process (``verbose=False``: never); it is also returned.
    """
    from yacs.config import CfgNode as CN

    from disakit import bundle

    global _reported
    registration = register()
    theirs = _leaves(cfg)
    report = PluginReport(registration)
    whole: set[str] = set()
    ours = _our_additions(_selected_nodes(registration))
    readers_of: dict[str, list[str]] = {}  # config node -> our trainers reading it, as registered
    for name, target in sorted(registration.trainers.items()):
        cfg_node = getattr(bundle.TRAINERS[name], "CFG_NODE", None)
        if cfg_node:
            readers_of.setdefault(cfg_node, []).append(target)
    for key, default in ours.items():
        parts = key.split(".")
        if key in theirs:
            report.kept.append(key)
            mine = theirs[key]
            if type(mine) is not type(default) or mine != default:
                readers = readers_of.get(parts[1], []) if parts[0] == "TRAINER" else []
                reads = f" ({', '.join(readers)} read{'s' if len(readers) == 1 else ''} " \
                        "yours)" if readers else ""
                report.differs.append(
                    f"{key} is yours ({mine!r}); our default is {default!r}{reads}")
            continue
        node = cfg
        for depth, part in enumerate(parts[:-1]):
            if part not in node:
                node[part] = CN()
                if depth == 1:
                    whole.add(".".join(parts[:2]))
            node = node[part]
        node[parts[-1]] = default
        report.added.append(key)
    kept_whole = {node for node in {".".join(k.split(".")[:2]) for k in report.kept}
                  if all(k in theirs for k in ours if k.startswith(node + "."))}
    report.added = _group(report.added, whole)
    report.kept = _group(report.kept, kept_whole)
    report.clip = _clip_origin()
    if verbose and not _reported:
        print("\n".join(report.lines()))
        _reported = True
    return report


def _clip_origin() -> str:
    from disakit.clipkit.compat import clip

    location = clip.__file__
    assert location is not None  # compat loads it from the installed package's __init__.py
    return f"{clip.__name__} from {Path(location).parent} (the installed distribution)"


def config_files(trainer: str) -> list[Path]:
    """Our config files for ``trainer`` (e.g. ``"DiSa"``), for ``--config-file``."""
    folder = CONFIGS / "trainers" / trainer
    if not folder.is_dir():
        known = sorted(p.name for p in (CONFIGS / "trainers").iterdir() if p.is_dir())
        raise KeyError(f"no bundled configs for {trainer!r}; known: {known}")
    return sorted(folder.glob("*.yaml"))


def _main(argv: list[str]) -> int:
    """``python -m disakit.plugin configs [TRAINER]``: where our config files are."""
    if not argv or argv[0] != "configs" or len(argv) > 2:
        print("usage: python -m disakit.plugin configs [TRAINER]   (e.g. configs DiSa)")
        return 2
    if len(argv) == 1:
        print(CONFIGS)
        return 0
    for path in config_files(argv[1]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
