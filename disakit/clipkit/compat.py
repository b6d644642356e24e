"""The single import point of OpenAI's ``clip`` package for the whole toolkit.

Why this module exists: ``clip/clip.py`` (PyPI ``openai-clip``) starts with
``from pkg_resources import packaging``, only to compare torch versions. ``pkg_resources`` was
removed from recent setuptools (>= 80, deprecated since 70), so a plain ``import clip`` fails
with ``ModuleNotFoundError: No module named 'pkg_resources'`` on current environments.

Rather than pinning an old setuptools or vendoring CLIP, we register a minimal stand-in module
``pkg_resources`` exposing the one attribute ``clip`` uses (``packaging``, the real ``packaging``
distribution with ``packaging.version`` imported), and only when the real ``pkg_resources``
cannot be imported. A working ``pkg_resources`` is never replaced.

Usage everywhere in the toolkit::

    from disakit.clipkit.compat import clip, tokenize
"""
from __future__ import annotations

import sys
import types

__all__ = ["clip", "tokenize", "MODEL_URLS", "PKG_RESOURCES_SHIMMED"]

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

import clip  # noqa: E402  (must follow the shim installation above)
import clip.model  # noqa: E402,F401  (makes ``clip.model.CLIP`` / ``build_model`` reachable)

tokenize = clip.tokenize
# Backbone name -> official download URL (``.../<sha256>/<file name>``). It is private in clip
# (``clip.clip._MODELS``; the package's ``import *`` does not re-export it), so it is read here.
MODEL_URLS: dict[str, str] = clip.clip._MODELS
