"""One run per output folder: an exclusive lock file that survives ``kill -9`` as *stale*.

Why a lock file and not ``flock``: a killed job's kernel lock vanishes, but so does any trace of
who held it, and ``flock`` on network file systems (where cluster outputs live) is unreliable.
The file says who holds the folder (host, pid, the process's start time, the SLURM job id), so
a second run can tell a live holder (refuse, naming it) from a dead one (take over, saying so).
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["LOCK_FILE", "FolderLock", "FolderLockedError", "read_holder", "holder_alive"]

LOCK_FILE = ".run.lock"


class FolderLockedError(RuntimeError):
    """Another live run holds the output folder."""


def _process_start_time(pid: int) -> Optional[str]:
    """The kernel's start time of ``pid`` (field 22 of /proc/pid/stat), to detect pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _me() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _process_start_time(pid),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "slurm_job": os.environ.get("SLURM_JOB_ID")}


def read_holder(folder: Path | str) -> Optional[dict[str, Any]]:
    """Who holds ``folder`` (the lock file's content), or None when it is not locked."""
    try:
        return json.loads((Path(folder) / LOCK_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"host": "?", "pid": -1, "unreadable": True}


def holder_alive(holder: dict[str, Any]) -> bool:
    """Whether the lock's holder may still run. Unknowable for another host: assume alive,
    unless it is this same SLURM job requeued (SLURM keeps the job id across a requeue)."""
    slurm_job = os.environ.get("SLURM_JOB_ID")
    if slurm_job and holder.get("slurm_job") == slurm_job:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_zombie(pid):
        return False
    start = holder.get("start")
    return start is None or _process_start_time(pid) == start


def describe(holder: dict[str, Any]) -> str:
    job = f", SLURM job {holder['slurm_job']}" if holder.get("slurm_job") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since', '?')}{job}"


class FolderLock:
    """``with FolderLock(folder):`` -- hold the folder for this process, or raise.

    A stale lock (its holder died, e.g. ``kill -9``) is taken over with a printed note.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.held = False

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = read_holder(self.folder)
                if holder is None:
                    continue  # released between our two looks
                if holder_alive(holder):
                    raise FolderLockedError(  # noqa: B904 (the clash is the error, not a cause)
                        f"{self.folder} is in use by another run ({describe(holder)}). Wait for "
                        f"it to finish, or use another --output-dir. If that run is gone (e.g. "
                        f"its machine died), delete {self.path}."
                    )
                print(f"Taking over {self.folder}: its previous run ({describe(holder)}) is no "
                      "longer alive")
                self._remove_if_same(holder)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_me(), f)
            self.held = True
            return self
        raise FolderLockedError(f"could not lock {self.folder}: the lock file keeps changing; "
                                "is another run starting in the same folder?")

    def _remove_if_same(self, holder: dict[str, Any]) -> None:
        if read_holder(self.folder) == holder:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def release(self) -> None:
        if self.held:
            self._remove_if_same(read_holder(self.folder) or {})
            self.held = False

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
