"""On-disk caches of ``Datum`` lists: few-shot subsets and ImageNet's preprocessed lists.

Why not upstream's pickles: a pickle of ``Datum``s stores the class path
``dassl.data.datasets.base_dataset.Datum`` and absolute image paths, so it breaks when the
engine differs or ``$DATA`` moves, and unpickling runs arbitrary code. This module therefore

* **reads** upstream pickles (``shot_<K>-seed_<S>.pkl``, ``preprocessed.pkl``) through a
  restricted unpickler that maps Dassl's ``Datum`` onto the seam's and refuses anything else —
  so a folder prepared by a real Dassl run yields exactly the same images here;
* **writes** its own JSON files next to them (``shot_<K>-seed_<S>.json``,
  ``preprocessed.json``) under names a real Dassl never opens, with paths relative to the
  dataset folder (moving ``$DATA`` keeps them valid), atomically (a crashed or concurrent run
  never leaves half a file).

Items are stored as runs of consecutive items sharing folder, label, domain and class name:
``[folder, label, domain, classname, [file, ...]]``. That keeps the item order exactly, makes
ImageNet's 1.28 M-item file ~30 MB, and loads in about a second without touching the images.
A loaded cache is checked cheaply for staleness: the first and last image of every list must
exist.

Where the files live, the ``SEED < 0`` rule, atomic writes, the read-only-folder rule and JSON
reading are :mod:`datasets.store`'s, shared with the class-prototype cache; this module adds
what is particular to ``Datum`` lists (the run encoding, upstream pickles, staleness).
"""
from __future__ import annotations

import os
import pickle
from typing import Any, Callable, Dict, List, Optional, Sequence

from disakit.dassl_api import Datum

from .common import bulk_build, make_datum
from .store import DatasetCache, atomic_write, json_writer, read_json

__all__ = [
    "CACHE_FORMAT", "PREPROCESSED_PKL", "PREPROCESSED_JSON", "StaleCacheError",
    "DatumUnpickler", "load_dassl_pickle", "encode_items", "decode_items",
    "write_datum_lists", "read_datum_lists", "check_cache_fresh", "FewShotCache",
    "load_or_build_preprocessed",
]

CACHE_FORMAT = "disa-toolkit/datum-runs/v1"
PREPROCESSED_PKL = "preprocessed.pkl"
PREPROCESSED_JSON = "preprocessed.json"

DatumLists = Dict[str, List[Datum]]

_DATUM_CLASS_PATHS = {
    ("dassl.data.datasets.base_dataset", "Datum"),
    ("disakit.dasslite.data.datasets.base_dataset", "Datum"),
    ("dasslite.data.datasets.base_dataset", "Datum"),  # written before the disakit package
}
# Protocols 0/1 rebuild objects through copyreg (Python-2 names when written with
# fix_imports); nothing else is needed for a dict of lists of Datums (dicts, lists, str and int
# are pickle opcodes, not classes).
_SAFE_GLOBALS = {
    ("copyreg", "_reconstructor"), ("builtins", "object"),
    ("copy_reg", "_reconstructor"), ("__builtin__", "object"),
}


class StaleCacheError(FileNotFoundError):
    """A cache refers to images that no longer exist (moved ``$DATA``, deleted images)."""


class DatumUnpickler(pickle.Unpickler):
    """Unpickler for Dassl cache files that only admits ``Datum``.

    ``dassl.data.datasets.base_dataset.Datum`` resolves to the seam's ``Datum`` (the engine
    in use); any other class raises ``pickle.UnpicklingError`` instead of being imported.
    """

    def find_class(self, module: str, name: str):
        if (module, name) in _DATUM_CLASS_PATHS:
            return Datum
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a Dassl cache holds only lists of "
            f"dassl.data.datasets.base_dataset.Datum"
        )


def load_dassl_pickle(path: str) -> DatumLists:
    """Load an upstream ``{"train": [Datum], ...}`` pickle with :class:`DatumUnpickler`."""
    try:
        with open(path, "rb") as f, bulk_build():
            data = DatumUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"Cannot read cache {path}: {exc}. Delete the file; it is rebuilt on the next run."
        ) from exc
    if not (isinstance(data, dict) and isinstance(data.get("train"), list)):
        raise ValueError(f"Cache {path} is not a dict with a 'train' list; delete the file.")
    return data


# ---------------------------------------------------------------------------------------------
# JSON run encoding
# ---------------------------------------------------------------------------------------------


def _relative(folder: str, base_dir: str) -> str:
    if folder == base_dir:
        return ""
    if folder.startswith(base_dir + os.sep):
        return folder[len(base_dir) + 1:]
    return folder  # outside the dataset folder: keep it absolute


def encode_items(items: Sequence[Datum], base_dir: str) -> list:
    """Runs ``[folder relative to base_dir, label, domain, classname, [file names]]``."""
    runs: list = []
    key = None
    for item in items:
        folder, name = os.path.split(item.impath)
        item_key = (folder, item.label, item.domain, item.classname)
        if item_key != key:
            key = item_key
            runs.append([_relative(folder, base_dir), item.label, item.domain, item.classname, []])
        runs[-1][4].append(name)
    return runs


def decode_items(runs: Sequence, base_dir: str) -> List[Datum]:
    """Inverse of :func:`encode_items`; builds ``Datum``s without touching the files."""
    items: List[Datum] = []
    with bulk_build():
        for folder, label, domain, classname, names in runs:
            prefix = os.path.join(base_dir, folder, "")
            items.extend([make_datum(prefix + name, label, domain, classname) for name in names])
    return items


def _datum_payload(lists: DatumLists, base_dir: str) -> Dict[str, Any]:
    payload: Dict[str, Any] = {"format": CACHE_FORMAT}
    payload.update({key: encode_items(items, base_dir) for key, items in lists.items()})
    return payload


def write_datum_lists(path: str, lists: DatumLists, base_dir: str) -> None:
    """Atomically write ``{"format": ..., name: runs}`` as compact JSON (errors propagate;
    the caches write through :meth:`DatasetCache.save <datasets.store.DatasetCache.save>`)."""
    atomic_write(path, json_writer(_datum_payload(lists, base_dir)))


def read_datum_lists(path: str, base_dir: str) -> DatumLists:
    """Load a file written by :func:`write_datum_lists` (paths re-rooted at ``base_dir``)."""
    payload = read_json(path)
    if not isinstance(payload, dict) or payload.get("format") != CACHE_FORMAT:
        raise ValueError(
            f"Cache {path} was not written by this toolkit (expected format {CACHE_FORMAT!r}); "
            f"delete it, it is rebuilt on the next run."
        )
    return {k: decode_items(v, base_dir) for k, v in payload.items() if k != "format"}


def check_cache_fresh(lists: DatumLists, path: str) -> None:
    """Raise :class:`StaleCacheError` unless the first and last image of each list exist."""
    for items in lists.values():
        for item in (items[:1] + items[-1:]) if items else ():
            if not os.path.exists(item.impath):
                raise StaleCacheError(
                    f"Cache {path} refers to an image that does not exist: {item.impath}\n"
                    f"The data folder was moved or the images changed since the cache was "
                    f"written. Fix: delete {path} (it is rebuilt on the next run; a few-shot "
                    f"cache is redrawn identically for the same seed)."
                )


def _load_cached(
    pkl_path: Optional[str], json_path: Optional[str], base_dir: str, message: str
) -> Optional[DatumLists]:
    """The upstream pickle if present, else our JSON, else None; checked for staleness."""
    readers: List[tuple] = [(pkl_path, load_dassl_pickle),
                            (json_path, lambda p: read_datum_lists(p, base_dir))]
    for path, reader in readers:
        if path is not None and os.path.exists(path):
            print(f"{message} {path}")
            data = reader(path)
            check_cache_fresh(data, path)
            return data
    return None


# ---------------------------------------------------------------------------------------------
# The two caches
# ---------------------------------------------------------------------------------------------


class FewShotCache:
    """``split_fewshot/shot_<K>-seed_<S>.{pkl,json}`` (docs/engine.md#few-shot-sampling-and-caches).

    Why: few-shot subsets are drawn once per (K, seed) and reused by base and new runs of that
    seed. A real Dassl's ``.pkl`` is preferred when present (same images as a Dassl run); our
    own cache is the ``.json``. With ``seed < 0``, or for a dataset without derived files,
    nothing is read or written (the paths are None).
    """

    def __init__(self, store: DatasetCache, num_shots: int, seed: int) -> None:
        stem = f"shot_{num_shots}-seed_{seed}"
        self.store = store
        self.pkl_path = store.fewshot_file(stem + ".pkl", seed)
        self.json_path = store.fewshot_file(stem + ".json", seed)
        self.enabled = self.json_path is not None

    def load(self) -> Optional[DatumLists]:
        """The cached ``{"train", ["val"]}`` lists, or None when there is no usable cache."""
        if not self.enabled or self.store.dataset_dir is None:
            return None
        return _load_cached(self.pkl_path, self.json_path, self.store.dataset_dir,
                            "Loading preprocessed few-shot data from")

    def save(self, data: DatumLists) -> None:
        """Write ``data`` to the JSON cache (no-op when disabled; skipped with one line when
        the folder cannot be written)."""
        if self.json_path is not None and self.store.dataset_dir is not None:
            self.store.save(self.json_path,
                            json_writer(_datum_payload(data, self.store.dataset_dir)),
                            "preprocessed few-shot data")


def load_or_build_preprocessed(store: DatasetCache, build: Callable[[], DatumLists]) -> DatumLists:
    """ImageNet's full ``{"train", "test"}`` lists: from a cache if any, else ``build()`` + save.

    Why: listing 1.33 M files takes minutes on a cold disk; the cache loads in about a second
    and is never re-validated per file (only its first and last images are checked). It does
    not depend on the seed (the listing is sorted), so ``SEED < 0`` runs use it too.
    """
    base_dir = store.dataset_dir
    pkl_path = store.dataset_file(PREPROCESSED_PKL)
    json_path = store.dataset_file(PREPROCESSED_JSON)
    data = (_load_cached(pkl_path, json_path, base_dir, "Loading preprocessed data from")
            if base_dir is not None else None)
    if data is None:
        data = build()
        if json_path is not None and base_dir is not None:
            store.save(json_path, json_writer(_datum_payload(data, base_dir)),
                       "preprocessed data")
    return data
