"""The single import point of OpenAI's ``clip`` package for the whole toolkit.

Why this module exists: ``clip/clip.py`` (PyPI ``openai-clip``) starts with
``from pkg_resources import packaging``, only to compare torch versions. ``pkg_resources`` was
removed from recent setuptools (>= 80, deprecated since 70), so a plain ``import clip`` fails
with ``ModuleNotFoundError: No module named 'pkg_resources'`` on current environments.

Rather than pinning an old setuptools or vendoring CLIP, we register a minimal stand-in module
``pkg_resources`` exposing the one attribute ``clip`` uses (``packaging``, the real ``packaging``
distribution with ``packaging.version`` imported), and only when the real ``pkg_resources``
cannot be imported. A working ``pkg_resources`` is never replaced.

Why CLIP is not imported as ``import clip``: the CoOp / MaPLe / PromptSRC / KgCoOp repositories
ship their own (edited) copy of CLIP as a ``clip/`` folder at their root. When their
``train.py`` runs from that root, the root is first on ``sys.path`` and ``import clip`` would
load *their* copy, so our code would silently run on another CLIP (or fail), depending on the
working directory. So the package is found through the installed distribution's metadata
(``importlib.metadata``: ``openai-clip``, else a distribution named ``clip`` such as
``pip install git+https://github.com/openai/CLIP``) and loaded from its own files under the
private module name ``disakit.clipkit._openai_clip``: a ``clip/`` folder on ``sys.path`` is
never looked at, and a bundled copy imported by the user's code as ``clip`` stays theirs.

Usage everywhere in the toolkit::

    from disakit.clipkit.compat import clip, tokenize
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import sys
import types
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Optional

__all__ = ["clip", "tokenize", "MODEL_URLS", "PKG_RESOURCES_SHIMMED", "installed_clip_dir",
           "ClipNotInstalledError"]

SHIM_MARKER = "__clipkit_shim__"


def _make_pkg_resources_shim() -> types.ModuleType:
    """Build the stand-in ``pkg_resources`` exposing only ``packaging`` (all ``clip`` needs)."""
    try:
        import packaging.version
    except ImportError as err:  # pragma: no cover - packaging is a hard requirement
        raise ImportError(
            "clipkit needs the 'packaging' distribution to import OpenAI's clip without "
            "pkg_resources; install it with `pip install packaging`."
        ) from err
    shim = types.ModuleType("pkg_resources")
    shim.__doc__ = "Minimal pkg_resources stand-in installed by clipkit.compat for openai-clip."
    shim.packaging = packaging  # type: ignore[attr-defined]
    setattr(shim, SHIM_MARKER, True)
    return shim


def _ensure_pkg_resources() -> bool:
    """Make ``import pkg_resources`` succeed; return True if the shim had to be installed."""
    try:
        import pkg_resources  # noqa: F401  (the real one is kept untouched)
    except ImportError:
        sys.modules["pkg_resources"] = _make_pkg_resources_shim()
        return True
    return False


PKG_RESOURCES_SHIMMED: bool = _ensure_pkg_resources()

PRIVATE_NAME = "disakit.clipkit._openai_clip"
CLIP_DISTRIBUTIONS = ("openai-clip", "clip")


class ClipNotInstalledError(ImportError):
    """No installed CLIP distribution was found (a ``clip/`` folder on sys.path does not count)."""


def _editable_location(dist: "importlib.metadata.Distribution") -> Optional[Path]:
    """The source folder of an editable install (PEP 610 ``direct_url.json``), or None."""
    try:
        info = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        return None
    if not info or not (info.get("dir_info") or {}).get("editable"):
        return None
    url = urllib.parse.urlparse(info.get("url", ""))
    return Path(urllib.request.url2pathname(url.path)) if url.scheme == "file" else None


def installed_clip_dir() -> Path:
    """The folder of the installed ``clip`` package, found through distribution metadata.

    Tries the distributions in :data:`CLIP_DISTRIBUTIONS`: the package listed in the
    distribution's files (a regular install) or, for an editable install, ``clip/`` under its
    source folder. Raises :class:`ClipNotInstalledError` naming the fix when none is installed.
    """
    looked = []
    for name in CLIP_DISTRIBUTIONS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        candidates = [Path(str(dist.locate_file(f))).parent for f in (dist.files or [])
                      if f.as_posix() == "clip/__init__.py"]
        editable = _editable_location(dist)
        if editable is not None:
            candidates.append(editable / "clip")
        for folder in candidates:
            looked.append(f"{name} -> {folder}")
            if all((folder / part).is_file() for part in ("__init__.py", "clip.py", "model.py")):
                return folder.resolve()
    where = f" (looked at: {'; '.join(looked)})" if looked else ""
    raise ClipNotInstalledError(
        "disakit needs OpenAI's CLIP installed as a distribution{}; install it with "
        "`pip install openai-clip`. A clip/ folder on sys.path (such as the copy bundled with "
        "the CoOp / MaPLe / PromptSRC repositories) is never used.".format(where))


def _load_installed_clip() -> types.ModuleType:
    """Import the installed ``clip`` package (and its ``model``) as :data:`PRIVATE_NAME`."""
    if PRIVATE_NAME in sys.modules:
        return sys.modules[PRIVATE_NAME]
    folder = installed_clip_dir()
    spec = importlib.util.spec_from_file_location(
        PRIVATE_NAME, folder / "__init__.py", submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import the installed clip package from {folder}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PRIVATE_NAME] = module  # before executing: its relative imports need it
    try:
        spec.loader.exec_module(module)
        importlib.import_module(PRIVATE_NAME + ".model")  # ``clip.model.CLIP`` / ``build_model``
    except BaseException:
        for key in [k for k in sys.modules
                    if k == PRIVATE_NAME or k.startswith(PRIVATE_NAME + ".")]:
            del sys.modules[key]
        raise
    return module


clip = _load_installed_clip()  # must follow the shim installation above

tokenize = clip.tokenize
# Backbone name -> official download URL (``.../<sha256>/<file name>``). It is private in clip
# (``clip.clip._MODELS``; the package's ``import *`` does not re-export it), so it is read here.
MODEL_URLS: dict[str, str] = clip.clip._MODELS
