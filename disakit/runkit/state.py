"""Whether a job is done, running, failed, interrupted or not started -- read from its folder.

"Done" means what the parsers need is in ``log.txt``: the result block (``=> result`` followed by
``* accuracy: X%``), after ``Finish training`` for a training run, in the log's *last attempt*
(the part after the last :data:`RESUME_BANNER`). A run whose final test crashed is therefore not
done (it is re-tested), and a resumed run's result counts (it is appended to the same log).
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from .lock import describe, holder_alive, read_holder
from .record import RunIdentityError, fingerprint, has_work, identity_diff, read_record

__all__ = ["RESUME_BANNER_PREFIX", "resume_banner", "JobState", "log_is_complete", "job_state",
           "last_error_line"]

RESUME_BANNER_PREFIX = "=> Run continued"
_ACCURACY = re.compile(r"\* accuracy: ([-+\d.eE]+)%")
_ERROR = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")


def resume_banner() -> str:
    """The line a continued run writes into an existing log before its own output."""
    return (f"{RESUME_BANNER_PREFIX} at {time.strftime('%Y-%m-%d %H:%M:%S')}: the lines above are "
            "an earlier attempt of this run (kept); this attempt resumes or re-tests it")


def _last_attempt(lines: list[str]) -> list[str]:
    starts = [i for i, line in enumerate(lines) if line.startswith(RESUME_BANNER_PREFIX)]
    return lines[starts[-1] + 1:] if starts else lines


def _read_lines(log: Path) -> list[str]:
    try:
        return log.read_text(errors="replace").splitlines()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return []


def log_is_complete(log: Path | str, training: bool, no_test: bool = False) -> bool:
    """Whether the last attempt in ``log`` wrote a whole result block (see module docstring);
    a training run with ``TEST.NO_TEST`` is complete at ``Finish training``."""
    lines = [line.strip() for line in _last_attempt(_read_lines(Path(log)))]
    if training:
        if "Finish training" not in lines:
            return False
        if no_test:
            return True
        lines = lines[lines.index("Finish training"):]
    seen_result = False
    for line in lines:
        if line == "=> result":
            seen_result = True
        elif seen_result and _ACCURACY.match(line):
            return True
    return False


def last_error_line(log: Path | str) -> str:
    """The last ``SomethingError: ...`` line of the log's last attempt (``""`` if none)."""
    errors = [line.strip() for line in _last_attempt(_read_lines(Path(log)))
              if _ERROR.match(line.strip())]
    return errors[-1] if errors else ""


@dataclass(frozen=True)
class JobState:
    """``status`` is one of pending, running, done, failed, interrupted, mismatch."""

    status: str
    detail: str = ""

    @property
    def needs_run(self) -> bool:
        return self.status in ("pending", "failed", "interrupted")


def job_state(folder: Path | str, training: bool, identity: Optional[Mapping[str, Any]] = None,
              defaults: Optional[Mapping[str, Any]] = None) -> JobState:
    """The state of the job whose output folder is ``folder``.

    ``identity`` is the requested run's (``defaults`` the default config's, see
    :func:`~disakit.runkit.record.identity_diff`); a folder holding work of another identity is
    ``mismatch`` (the run would refuse it), whatever its progress.
    """
    folder = Path(folder)
    try:
        record = read_record(folder)
    except RunIdentityError as err:
        return JobState("failed", str(err))
    if identity is not None and record and has_work(folder) \
            and record.get("fingerprint") != fingerprint(identity):
        diff = identity_diff(record.get("identity", {}), identity, defaults)
        if diff:
            return JobState("mismatch", "; ".join(diff[:3]) + (" ..." if len(diff) > 3 else ""))
    holder = read_holder(folder)
    if holder is not None and holder_alive(holder):
        return JobState("running", describe(holder))
    log = folder / "log.txt"
    no_test = bool(record and record.get("identity", {}).get("TEST.NO_TEST"))
    if log_is_complete(log, training, no_test):
        return JobState("done")
    if record and record.get("status") == "failed":
        return JobState("failed", record.get("error") or last_error_line(log))
    if record and record.get("status") == "finished":  # finished, but no result in the log
        return JobState("failed", "the run ended without a result block in log.txt")
    if has_work(folder):
        error = last_error_line(log)
        return JobState("interrupted", error or "stopped before its result (killed?)")
    return JobState("pending")
