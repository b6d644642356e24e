"""Where a dataset's derived files live, and the one way they are written, read and trusted.

Why one module: a run derives files from a dataset folder that later runs reuse -- the few-shot
draws and ImageNet's file list (:mod:`datasets.cache`), the class prototypes of DAPT and DiSa
(``trainers/prototypes.py``). Reusing a derived file is safe only under the same rules, so they
are written once, here, and every cache goes through them:

* **where** (:class:`DatasetCache`): anything that depends on a few-shot draw lives in the
  dataset's ``split_fewshot/`` folder (upstream's place and names), ImageNet's file list in the
  dataset folder itself (``preprocessed.*``). A dataset without such a folder -- the test-only
  ImageNet variants, a reader not built on this toolkit's templates -- has an
  :meth:`~DatasetCache.absent` store that says why; nothing is read or written for it.
  The readers create ``split_fewshot/`` when they are built (as upstream's do); a write creates
  it again if it is missing.
* **when**: a file that depends on a seeded draw exists only for ``SEED >= 0``
  (:meth:`DatasetCache.fewshot_file`): an unseeded run's draws are not reproducible, so caching
  one would freeze it for every later unseeded run.
* **how it is written** (:func:`atomic_write`): to a temporary file in the same folder, then
  ``os.replace``; a crashed or concurrent run never leaves half a file, and the temporary file
  is removed when writing fails. A folder that cannot be written (a read-only data mount) skips
  the cache with one printed line and the run goes on (:meth:`DatasetCache.save`).
* **how it is read**: only through safe loaders -- JSON (:func:`read_json`), tensors and plain
  data through :func:`disakit.runkit.safe_load.safe_torch_load` (:func:`read_torch`); upstream
  Dassl pickles through :mod:`datasets.cache`'s restricted unpickler. Nothing read can run code.
* **when it is valid** (:class:`KeyedFile`): a file computed from settings stores the full key
  it was computed for; a file whose stored key (or format) differs is recomputed, never used.

The file names and formats are unchanged from earlier versions, so caches already on disk
(including a real Dassl's ``shot_<K>-seed_<S>.pkl`` and ``preprocessed.pkl``) are read as before.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from typing import Any, Callable, Dict, Optional

__all__ = [
    "FEWSHOT_DIR", "fewshot_dir", "atomic_write", "json_writer", "torch_writer", "read_json",
    "read_torch", "DatasetCache", "KeyedFile",
]

FEWSHOT_DIR = "split_fewshot"

Writer = Callable[[str], None]


def fewshot_dir(dataset_dir: str) -> str:
    """``<dataset_dir>/split_fewshot``: the folder of a dataset's seeded derived files."""
    return os.path.join(dataset_dir, FEWSHOT_DIR)


# ---------------------------------------------------------------------------------------------
# Writing and reading one file
# ---------------------------------------------------------------------------------------------


def atomic_write(path: str, write: Writer) -> None:
    """Run ``write(tmp)`` on a temporary name next to ``path``, then ``os.replace`` it.

    The temporary name is unique per process and call (a concurrent writer, even on another host
    sharing the folder, never writes into ours); it is removed whatever ``write`` raises, so a
    failed write leaves neither half a file nor a stray temporary one. Errors propagate.
    """
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            with contextlib.suppress(OSError):  # never hide the error that got us here
                os.remove(tmp)


def json_writer(payload: Any) -> Writer:
    """A writer of ``payload`` as compact JSON (for :func:`atomic_write`)."""
    def write(path: str) -> None:
        with open(path, "w") as f:
            json.dump(payload, f, separators=(",", ":"))
    return write


def torch_writer(payload: Any) -> Writer:
    """A writer of ``payload`` (tensors and plain data) in ``torch.save``'s format.

    The payload is serialised in memory first, so a disk that fails mid-write raises an
    ``OSError`` (skipped by :meth:`DatasetCache.save`) and a payload torch cannot save raises
    before anything is written.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()

    def write(path: str) -> None:
        with open(path, "wb") as f:
            f.write(data)
    return write


def read_json(path: str) -> Any:
    """The JSON at ``path``; a file that is not JSON raises ``ValueError`` naming the fix."""
    try:
        with open(path, "r") as f:
            return json.load(f)
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"Cache {path} is corrupt ({exc}); delete it.") from exc


def read_torch(path: str, what: str) -> Any:
    """A ``torch.save`` file read with :func:`~disakit.runkit.safe_load.safe_torch_load`
    (tensors and plain data only; a file holding anything else is refused, never run)."""
    from disakit.runkit.safe_load import safe_torch_load

    return safe_torch_load(path, what=what)


# ---------------------------------------------------------------------------------------------
# A dataset's derived files
# ---------------------------------------------------------------------------------------------


class DatasetCache:
    """The derived files of one dataset: where they live and how they are saved.

    ``DatasetCache(dataset_dir)`` for a dataset that has them (the training readers);
    :meth:`absent` for one that has none, with the reason a run prints when it would have
    cached something.
    """

    def __init__(self, dataset_dir: Optional[str], absent_reason: str = "") -> None:
        if (dataset_dir is None) == (not absent_reason):
            raise ValueError("give a dataset folder, or no folder and the reason it has none")
        self.dataset_dir = dataset_dir
        self.absent_reason = absent_reason

    @classmethod
    def absent(cls, reason: str) -> "DatasetCache":
        """A dataset without derived files (e.g. ``"ImageNetV2 is a test-only dataset"``)."""
        return cls(None, reason)

    def __repr__(self) -> str:
        where = self.dataset_dir if self.dataset_dir is not None else self.absent_reason
        return f"DatasetCache({where!r})"

    @property
    def fewshot_dir(self) -> Optional[str]:
        """``<dataset>/split_fewshot`` (None without a dataset folder)."""
        return fewshot_dir(self.dataset_dir) if self.dataset_dir is not None else None

    def create_fewshot_dir(self) -> bool:
        """Create ``split_fewshot/`` now, as upstream's readers do when built.

        Best effort and silent: on a read-only data folder it returns False, and the first
        :meth:`save` into it prints the one line that says the cache is skipped.
        """
        folder = self.fewshot_dir
        if folder is None:
            return False
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            return False
        return True

    def dataset_file(self, name: str) -> Optional[str]:
        """``<dataset>/<name>`` (ImageNet's ``preprocessed.*``); None without a folder."""
        return os.path.join(self.dataset_dir, name) if self.dataset_dir is not None else None

    def fewshot_file(self, name: str, seed: int) -> Optional[str]:
        """``<dataset>/split_fewshot/<name>`` of a seeded draw; None when the dataset has no
        folder or ``seed < 0`` (nothing is then read or written: :meth:`disabled_reason`)."""
        folder = self.fewshot_dir
        return os.path.join(folder, name) if folder is not None and seed >= 0 else None

    def disabled_reason(self, seed: int) -> str:
        """Why :meth:`fewshot_file` is None for ``seed`` ('' when it is not)."""
        if self.dataset_dir is None:
            return self.absent_reason
        return "SEED < 0: an unseeded run's draws are not reproducible" if seed < 0 else ""

    def save(self, path: str, write: Writer, what: str) -> bool:
        """Write ``path`` atomically (its folder created if missing); True when written.

        Prints ``Saving <what> to <path>`` once the file is in place. A folder that cannot be
        written is not an error: one ``Note:`` line names the file and the reason, and the run
        continues without the cache (False).
        """
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, write)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            print(f"Note: {what} not cached: cannot write {path} ({reason}); the run "
                  f"continues without the cache")
            return False
        print(f"Saving {what} to {path}")
        return True

    def keyed_file(self, name: str, seed: int, fmt: str, key: Dict[str, Any],
                   what: str) -> "KeyedFile":
        """The seeded file ``split_fewshot/<name>``, valid only for ``fmt`` and ``key``."""
        return KeyedFile(self, self.fewshot_file(name, seed), fmt, key, what,
                         self.disabled_reason(seed))


class KeyedFile:
    """A derived file valid only for the settings it was computed from (module docstring).

    On disk: ``torch.save({"format": fmt, "key": key, **payload})`` with tensors and plain data,
    read back with :func:`read_torch`. ``path`` is None when the file is disabled (no folder,
    ``SEED < 0``): nothing is then read, and :meth:`save` says once why nothing is written.
    """

    def __init__(self, store: DatasetCache, path: Optional[str], fmt: str, key: Dict[str, Any],
                 what: str, disabled_reason: str = "") -> None:
        self.store = store
        self.path = path
        self.format = fmt
        self.key = key
        self.what = what
        self.disabled_reason = disabled_reason

    def load(self) -> Optional[Dict[str, Any]]:
        """The stored payload (with ``format`` and ``key``), or None when the file is missing,
        disabled, or was computed for another key or format (then it is to be recomputed)."""
        if self.path is None or not os.path.isfile(self.path):
            return None
        data = read_torch(self.path, what=self.what)
        if (not isinstance(data, dict) or data.get("format") != self.format
                or data.get("key") != self.key):
            print(f"{self.what[:1].upper()}{self.what[1:]} at {self.path} were computed for "
                  "other settings; recomputing")
            return None
        print(f"Loading {self.what} from {self.path}")
        return data

    def save(self, payload: Dict[str, Any]) -> bool:
        """Store ``payload`` under this file's format and key (:meth:`DatasetCache.save`)."""
        if self.path is None:
            print(f"Note: {self.what} not cached ({self.disabled_reason})")
            return False
        content = {"format": self.format, "key": self.key, **payload}
        return self.store.save(self.path, torch_writer(content), self.what)
