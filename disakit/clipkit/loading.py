"""Offline loading of CLIP backbones by name or by path, on top of the stock ``clip`` package.

Why not ``clip.load``: it downloads missing files, needs an explicit root for its cache, and
cannot read plain state-dict files under current torch (``torch.load`` defaults to
``weights_only=True`` and the file handle was already consumed by the TorchScript attempt).
Here nothing is ever downloaded; a backbone name maps to a file in the CLIP cache folder, the
official files are checked against the SHA256 embedded in OpenAI's URLs (cached in a small
stamp file so the ~350 MB hash is paid once), and both TorchScript archives and plain state
dicts are accepted. The model itself is always ``clip.model.build_model``'s, never a copy.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import torch

from disakit.clipkit.compat import MODEL_URLS, clip
from disakit.runkit.safe_load import UnsafeCheckpointError, safe_torch_load

__all__ = [
    "CLIP_CACHE_ENV", "STAMP_FILE_NAME", "OFFICIAL_SHA256", "CLIPWeightsError",
    "ChecksumMismatchError", "clip_cache_dir", "available_backbones", "resolve_backbone",
    "expected_sha256", "verify_checksum", "file_sha256", "load_state_dict_any", "load_clip",
]

logger = logging.getLogger(__name__)

CLIP_CACHE_ENV = "CLIP_CACHE_DIR"
STAMP_FILE_NAME = ".clipkit_sha256.json"
_HASH_CHUNK = 1 << 20
# Keys every CLIP state dict has, whatever the tower type; used to reject non-CLIP files early.
_REQUIRED_KEYS = ("positional_embedding", "text_projection", "token_embedding.weight",
                  "ln_final.weight")
_VISION_KEYS = ("visual.proj", "visual.attnpool.positional_embedding")
PathLike = Union[str, "os.PathLike[str]"]


def _official_sha256_table() -> dict[str, str]:
    """Map official file names to SHA256 digests: the URL path component before the name."""
    return {url.rsplit("/", 1)[1]: url.rsplit("/", 2)[1] for url in MODEL_URLS.values()}


OFFICIAL_SHA256: dict[str, str] = _official_sha256_table()


class CLIPWeightsError(RuntimeError):
    """A weights file exists but cannot be used as CLIP weights (corrupt, truncated, not CLIP)."""


class ChecksumMismatchError(CLIPWeightsError):
    """An official-named file in the cache folder is not byte-identical to OpenAI's release."""


def clip_cache_dir() -> Path:
    """Folder holding the official weight files: ``$CLIP_CACHE_DIR`` or ``~/.cache/clip``."""
    folder = os.environ.get(CLIP_CACHE_ENV) or "~/.cache/clip"
    return Path(folder).expanduser()


def available_backbones() -> list[str]:
    """Backbone names accepted by :func:`resolve_backbone` (the keys of ``clip._MODELS``)."""
    return list(MODEL_URLS)


def _official_file_name(backbone: str) -> str:
    return MODEL_URLS[backbone].rsplit("/", 1)[1]


def _looks_like_path(text: str) -> bool:
    """True for strings that are clearly file paths rather than misspelled backbone names."""
    return (text.startswith(("~", ".", os.sep)) or Path(text).suffix in {".pt", ".pth", ".bin"}
            or (os.altsep is not None and os.altsep in text))


def _unknown_backbone_error(name: str) -> ValueError:
    names = available_backbones()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.0)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"Unknown CLIP backbone {name!r}.{hint} Valid names: {', '.join(names)}. "
        f"A path to an existing weights file (TorchScript archive or state dict) is also accepted."
    )


def _missing_weights_error(backbone: str, path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"CLIP weights for backbone {backbone!r} not found: searched {path}. Weights cannot be "
        f"downloaded here: copy the official OpenAI file {path.name} into {path.parent} "
        f"(set the environment variable {CLIP_CACHE_ENV} to use another folder; default "
        f"~/.cache/clip), or pass the path to a weights file instead of the backbone name."
    )


def resolve_backbone(name_or_path: PathLike) -> Path:
    """Turn ``MODEL.BACKBONE.NAME`` into a weights file: an existing path, else a cache file.

    Existing files (absolute, relative or ``~`` paths) are used as they are; a key of
    ``clip._MODELS`` maps to ``<cache>/<URL basename>`` (e.g. ``ViT-B/16`` -> ``ViT-B-16.pt``).
    """
    text = os.fspath(name_or_path)
    candidate = Path(text).expanduser()
    if candidate.is_file():
        return candidate
    if text in MODEL_URLS:
        path = clip_cache_dir() / _official_file_name(text)
        if not path.is_file():
            raise _missing_weights_error(text, path)
        return path
    if _looks_like_path(text):
        raise FileNotFoundError(
            f"CLIP weights file {candidate.absolute()} does not exist. Pass an existing file, "
            f"or one of the backbone names {', '.join(available_backbones())}."
        )
    raise _unknown_backbone_error(text)


def _same_folder(a: Path, b: Path) -> bool:
    return a.expanduser().resolve() == b.expanduser().resolve()


def expected_sha256(path: PathLike) -> Optional[str]:
    """Official digest ``path`` must have, or None when the file is not an official one.

    Only files named like an official checkpoint *inside the cache folder* are checked, so
    custom weights stay loadable by any other name or location.
    """
    path = Path(path)
    digest = OFFICIAL_SHA256.get(path.name)
    if digest is None or not _same_folder(path.parent, clip_cache_dir()):
        return None
    return digest


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _file_signature(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _read_stamps(stamp_path: Path) -> dict[str, Any]:
    try:
        stamps = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return {}
    return stamps if isinstance(stamps, dict) else {}


def _write_stamp(path: Path, digest: str) -> None:
    """Record a successful verification; best effort (a read-only folder just re-hashes)."""
    stamp_path = path.parent / STAMP_FILE_NAME
    stamps = _read_stamps(stamp_path)
    stamps[path.name] = {**_file_signature(path), "sha256": digest}
    try:
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False,
                                         prefix=STAMP_FILE_NAME, suffix=".tmp") as tmp:
            json.dump(stamps, tmp, indent=1, sort_keys=True)
        os.replace(tmp.name, stamp_path)
    except OSError as err:
        logger.debug("Could not write checksum stamp %s: %s", stamp_path, err)


def _stamp_matches(path: Path, digest: str) -> bool:
    entry = _read_stamps(path.parent / STAMP_FILE_NAME).get(path.name)
    return entry == {**_file_signature(path), "sha256": digest}


def file_sha256(path: PathLike) -> str:
    """SHA256 of a weights file, stamp-cached like :func:`verify_checksum` (hashed once).

    Why: a run's identity includes the backbone's content, and hashing a 600 MB checkpoint for
    every job of a paper table would cost minutes.
    """
    path = Path(path)
    entry = _read_stamps(path.parent / STAMP_FILE_NAME).get(path.name)
    if entry and {k: entry.get(k) for k in ("size", "mtime_ns")} == _file_signature(path):
        return str(entry["sha256"])
    digest = _sha256_file(path)
    _write_stamp(path, digest)
    return digest


def verify_checksum(path: PathLike, expected: str) -> None:
    """Raise :class:`ChecksumMismatchError` unless the file's SHA256 equals ``expected``.

    A success is stamped (size, mtime_ns, digest) in ``STAMP_FILE_NAME`` next to the file, so
    later runs skip hashing until the file changes.
    """
    path = Path(path)
    if _stamp_matches(path, expected):
        return
    actual = _sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path} is not the official OpenAI checkpoint {path.name}: SHA256 {actual} != "
            f"expected {expected}. The file is corrupt, partially copied, or holds other "
            f"weights. Re-copy the official file to {path}; to use custom weights, pass their "
            f"path under a file name that is not an official one (or load with verify=False)."
        )
    _write_stamp(path, actual)


def _read_torchscript(path: Path) -> Any:
    """torch.jit.load (OpenAI's TorchScript archive)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        return torch.jit.load(str(path), map_location="cpu").state_dict()


def _read_pickled(path: Path) -> Any:
    """torch.load(weights_only=True) (plain state dict)"""
    return safe_torch_load(path, what="CLIP weights")


def _unwrap_state_dict(obj: Any) -> Optional[dict[str, torch.Tensor]]:
    """Return the CLIP tensors of a (possibly wrapped / DataParallel) state dict, else None."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        return None
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    has_vision = any(k in state for k in _VISION_KEYS)
    return state if has_vision and all(k in state for k in _REQUIRED_KEYS) else None


def _first_line(err: BaseException, limit: int = 160) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {text[:limit]}"


def _unusable_file_error(path: Path, attempts: list[str]) -> CLIPWeightsError:
    return CLIPWeightsError(
        f"Cannot read CLIP weights from {path}. Tried {'; '.join(attempts)}. The file is "
        "corrupt, truncated, or not a CLIP checkpoint: re-copy the official OpenAI file, or "
        "write a valid one with scripts/make_random_clip.py."
    )


def load_state_dict_any(path: PathLike) -> dict[str, torch.Tensor]:
    """Read CLIP weights on CPU from a TorchScript archive or a plain ``torch.save`` state dict.

    Accepts ``{"state_dict": {...}}`` wrappers and ``module.`` prefixes. Anything that is not a
    CLIP state dict raises one :class:`CLIPWeightsError` naming the file and every attempt.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights file {path} does not exist.")
    attempts: list[str] = []
    readers: tuple[Callable[[Path], Any], ...] = (_read_torchscript, _read_pickled)
    for reader in readers:
        try:
            raw = reader(path)
        except UnsafeCheckpointError:
            raise  # never retried another way: the file wants to run code
        except Exception as err:  # noqa: BLE001 - each reader fails in its own way
            attempts.append(f"{reader.__doc__} -> {_first_line(err)}")
            continue
        state = _unwrap_state_dict(raw)
        if state is not None:
            return state
        attempts.append(f"{reader.__doc__} -> read, but no CLIP state dict inside")
    raise _unusable_file_error(path, attempts)


def _build_fp32_model(state_dict: dict[str, torch.Tensor], path: Path) -> Any:
    """``build_model``, then the weights re-loaded into the fp32 model.

    Returns the stock ``clip.model.CLIP`` (typed ``Any``: the class comes from the installed
    ``clip`` package, loaded at run time under a private name, so mypy cannot see it).

    ``build_model`` stores weights in its fp16 layout, which would silently round fp32 files;
    re-loading keeps them exact (fp16 files give the same values either way).
    """
    try:
        model = clip.model.build_model(state_dict).float()
        model.load_state_dict(state_dict)  # build_model already dropped the metadata keys
    except (KeyError, RuntimeError, ValueError, AssertionError) as err:
        raise _unusable_file_error(path, [f"clip.model.build_model -> {_first_line(err)}"]) from err
    return model


def load_clip(name_or_path: PathLike, *, verify: bool = True) -> Any:
    """Load a CLIP backbone offline, in fp32 eval mode on CPU, with the stock ``clip`` model.

    Returns a ``clip.model.CLIP`` (typed ``Any``, see :func:`_build_fp32_model`).

    ``name_or_path`` is a key of ``clip._MODELS`` (file taken from :func:`clip_cache_dir`) or
    a weights file. Official files in the cache folder are SHA256-checked unless ``verify`` is
    False. fp32 files keep full precision (``build_model`` alone would round them to fp16).
    Parameters keep ``requires_grad=True``: freezing is the trainer's decision.
    """
    path = resolve_backbone(name_or_path)
    digest = expected_sha256(path) if verify else None
    if digest is not None:
        verify_checksum(path, digest)
    return _build_fp32_model(load_state_dict_any(path), path).eval()
