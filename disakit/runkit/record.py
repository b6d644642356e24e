"""What a run is: its resolved config, its fingerprint, and the record kept in its folder.

Each output folder holds

* ``config.yaml`` -- the resolved config the run was started with (yacs dump);
* ``run.json``    -- the identity (every result-determining value, flattened), its
  fingerprint, the command, and the run's status (``running`` / ``finished`` / ``failed`` with
  the error).

Why: a paper table is hundreds of folders; a folder must say what produced it, and a second
run into it must be either *the same run* (resume / re-test) or refused, never silently mixed,
skipped or overwritten.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

__all__ = [
    "RECORD_FILE", "CONFIG_FILE", "IGNORED_KEYS", "DASSL_ONLY_NODES", "RunIdentityError",
    "flatten_cfg", "make_identity", "fingerprint", "read_record", "identity_diff", "has_work",
    "RunRecord", "RunSession", "write_text_atomic",
]

RECORD_FILE = "run.json"
CONFIG_FILE = "config.yaml"
REPLACED_DIR = ".replaced"

# Keys that say *where* a run reads and writes, how chatty it is, or how it trades memory for
# time without changing a number (gradient checkpointing is exact), not what it computes: a run
# interrupted for lack of memory may be continued with checkpointing switched on.
IGNORED_KEYS = frozenset({"OUTPUT_DIR", "RESUME", "DATASET.ROOT", "TRAIN.PRINT_FREQ", "VERBOSE",
                          "MODEL.GRAD_CHECKPOINTING"})

# Config nodes that only a real Dassl's defaults have (its own domain-adaptation, -generalisation
# and semi-supervised trainers; the bundled engine leaves them out). No prompt learner reads them;
# leaving them out of the identity makes a run the same run on either engine, so a folder
# trained on one resumes (and is re-tested) on the other.
DASSL_ONLY_NODES = frozenset({
    "TRAINER.MCD", "TRAINER.MME", "TRAINER.CDAC", "TRAINER.SE", "TRAINER.M3SDA", "TRAINER.DAEL",
    "TRAINER.CROSSGRAD", "TRAINER.DDAIG", "TRAINER.DAELDG", "TRAINER.DOMAINMIX",
    "TRAINER.ENTMIN", "TRAINER.MEANTEACHER", "TRAINER.MIXMATCH", "TRAINER.FIXMATCH",
})


class RunIdentityError(RuntimeError):
    """The folder holds work of a different run (another config, data, backbone or seed)."""


def flatten_cfg(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"OPTIM.LR": 0.002, ...}`` from a (nested) yacs node, with JSON-stable values."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_cfg(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = [v for v in value]
        else:
            flat[name] = value
    return flat


def make_identity(cfg: Mapping[str, Any],
                  extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Everything that determines a run's result: the resolved config (less ``IGNORED_KEYS`` and
    the ``DASSL_ONLY_NODES``) plus ``extra`` (backbone file digest, eval-only flags, the evaluated
    model's fingerprint)."""
    identity = {k: v for k, v in flatten_cfg(cfg).items()
                if k not in IGNORED_KEYS and k.rpartition(".")[0] not in DASSL_ONLY_NODES}
    identity.update(extra or {})
    return json.loads(json.dumps(identity, sort_keys=True, default=str))


def fingerprint(identity: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def read_record(folder: Path | str) -> Optional[dict[str, Any]]:
    """The folder's ``run.json``, or None (no record: not started, or written by other code)."""
    try:
        return json.loads((Path(folder) / RECORD_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise RunIdentityError(f"{Path(folder) / RECORD_FILE} is unreadable ({err}); delete it "
                               "only if you know which config produced this folder") from None


_UNSET = "<unset>"


def identity_diff(old: Mapping[str, Any], new: Mapping[str, Any],
                  defaults: Optional[Mapping[str, Any]] = None) -> list[str]:
    """``KEY: old -> new`` for every key whose value differs (missing keys shown as <unset>).

    With ``defaults`` (the identity of the default config), a key that only one side has and
    whose value there is its default is no difference: a config key added by a newer toolkit
    version (defaulting to the old behaviour) must not orphan every folder finished before.
    """
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, _UNSET), new.get(key, _UNSET)
        if a == b:
            continue
        if defaults is not None and key in defaults and _UNSET in (a, b) \
                and (b if a == _UNSET else a) == defaults[key]:
            continue
        lines.append(f"{key}: {a!r} -> {b!r}")
    return lines


def has_work(folder: Path) -> bool:
    """Whether ``folder`` holds anything a run produced (a log or a checkpoint)."""
    if not folder.is_dir():
        return False
    return any(p.name.startswith("log.txt") or (p.is_dir() and (p / "checkpoint").exists())
               for p in folder.iterdir())


@dataclass
class RunRecord:
    """The record of one run in ``folder``; :meth:`check` before anything is written."""

    folder: Path
    identity: dict[str, Any]
    command: list[str]
    defaults: Optional[dict[str, Any]] = None  # identity of the default config (identity_diff)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity)

    @property
    def path(self) -> Path:
        return self.folder / RECORD_FILE

    def check(self, overwrite: bool = False) -> str:
        """Decide what this run may do with its folder; returns ``new``, ``same`` or ``legacy``.

        Raises :class:`RunIdentityError` when the folder holds work of another identity, naming
        the keys that differ and the two ways out. With ``overwrite``, that earlier work is
        moved aside to ``<folder>/.replaced/<time>/`` (never deleted) and the run starts anew.
        """
        old = read_record(self.folder)
        if old is None:
            return "legacy" if has_work(self.folder) else "new"
        if old.get("fingerprint") == self.fingerprint:
            return "same"
        if not has_work(self.folder):
            return "new"
        diff = identity_diff(old.get("identity", {}), self.identity, self.defaults)
        if not diff:
            print(f"Note: {self.folder} was recorded by an earlier version of the toolkit; the "
                  "config keys added since keep their defaults, so this is the same run")
            return "same"
        if overwrite:
            self._move_aside()
            return "new"
        shown = "\n  ".join(diff[:20]) + ("\n  ..." if len(diff) > 20 else "")
        raise RunIdentityError(
            f"{self.folder} holds a run with another configuration "
            f"(recorded {old.get('fingerprint')}, "
            f"requested {self.fingerprint}); the keys that differ (recorded -> requested):\n  "
            f"{shown}\nEither write to another output directory (--output-dir, or OUTPUT for "
            f"the scripts), or pass --overwrite (scripts: OVERWRITE=1) to move the earlier run "
            f"aside to {self.folder / REPLACED_DIR}/ and start anew."
        )

    def _move_aside(self) -> None:
        target = self.folder / REPLACED_DIR / time.strftime("%Y-%m-%d-%H-%M-%S")
        target.mkdir(parents=True, exist_ok=False)
        for item in list(self.folder.iterdir()):
            if item.name not in (REPLACED_DIR, ".run.lock"):
                shutil.move(str(item), str(target / item.name))
        print(f"Moved the earlier run in {self.folder} aside to {target}")

    def start(self, config_text: str) -> None:
        """Write ``config.yaml`` and ``run.json`` (status ``running``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / CONFIG_FILE, config_text)
        self._write("running")

    def finish(self) -> None:
        self._write("finished")

    def fail(self, error: BaseException) -> None:
        self._write("failed", error=f"{type(error).__name__}: {error}".strip().splitlines()[0])

    def _write(self, status: str, **extra: Any) -> None:
        record = {"fingerprint": self.fingerprint, "status": status,
                  "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "host": socket.gethostname(),
                  "pid": os.getpid(), "command": self.command, "identity": self.identity, **extra}
        write_text_atomic(self.path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path``, then rename: readers (other runs, the
    driver's status) never see half a record."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def command_line(argv: Optional[Iterable[str]] = None) -> list[str]:
    return [sys.executable, *(sys.argv if argv is None else argv)]


class RunSession:
    """``with RunSession(folder, identity, command, overwrite):`` -- one run's bookkeeping.

    Locks the folder (refusing a live second run), checks the identity against the folder's
    record (refusing another run's folder), writes ``config.yaml`` / ``run.json``, and on exit
    marks the run ``finished`` or ``failed`` and releases the lock. A ``kill -9`` leaves the
    record at ``running`` and a stale lock, both recognised by the next run.
    """

    def __init__(self, folder: Path | str, identity: dict[str, Any], config_text: str,
                 command: Optional[list[str]] = None, overwrite: bool = False,
                 defaults: Optional[dict[str, Any]] = None) -> None:
        from .lock import FolderLock

        self.record = RunRecord(Path(folder), identity, command or command_line(), defaults)
        self.lock = FolderLock(folder)
        self.config_text = config_text
        self.overwrite = overwrite
        self.kind = "new"

    def __enter__(self) -> "RunSession":
        self.lock.acquire()
        try:
            self.kind = self.record.check(self.overwrite)
            self.record.start(self.config_text)
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        try:
            if exc is None:
                self.record.finish()
            else:
                self.record.fail(exc)
        finally:
            self.lock.release()
