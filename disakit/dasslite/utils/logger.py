"""Tee ``print`` output to ``log.txt`` (Dassl's ``dassl.utils.logger``).

``parse_test_res.py`` reads the results from ``log.txt``, so everything printed to stdout must
reach the file. Differences from upstream: ``close()`` never closes the real stdout, a
second ``setup_logger`` call does not chain loggers, and uncaught exception tracebacks are
written to the log as well as to stderr.
"""
from __future__ import annotations

import os
import os.path as osp
import sys
import time
import traceback
from typing import Any, Optional

from .tools import mkdir_if_missing

__all__ = ["Logger", "setup_logger"]


class Logger:
    """A stdout replacement that writes to the console and to a file.

    Why: results must land in ``log.txt`` while still being visible on the console. Only stdout
    is teed; warnings and progress bars (stderr) stay out of the file.
    """

    def __init__(self, fpath: Optional[str] = None, mode: str = "w") -> None:
        self.console = sys.stdout
        self.file = None
        if fpath is not None:
            parent = osp.dirname(fpath)
            if parent:
                mkdir_if_missing(parent)
            # Line-buffered: a killed run's log holds every line printed before the kill.
            self.file = open(fpath, mode, buffering=1)

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Delegate e.g. ``isatty``/``encoding`` to the console; ``console`` itself must exist.
        if name == "console":
            raise AttributeError(name)
        return getattr(self.console, name)

    def write(self, msg: str) -> None:
        # File first: whoever sees a line on the console (and then kills the run) finds it
        # in the log too.
        self.write_file_only(msg)
        self.console.write(msg)

    def write_file_only(self, msg: str) -> None:
        """Write ``msg`` to the log file only (used for tracebacks already shown on stderr)."""
        if self.file is not None and not self.file.closed:
            self.file.write(msg)

    def flush(self) -> None:
        self.console.flush()
        if self.file is not None and not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close the log file; the console (the real stdout) stays open."""
        file = getattr(self, "file", None)
        if file is not None and not file.closed:
            file.close()


def _log_path(output: str) -> str:
    """``output`` itself if it names a .txt/.log file, else ``output/log.txt``; never reused."""
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    candidate, n = fpath, 0
    while osp.exists(candidate):  # two runs within one second
        n += 1
        candidate = f"{fpath}-{n}"
    return candidate


_previous_excepthook = None


def _log_uncaught(exc_type: Any, exc: BaseException, tb: Any) -> None:
    """Excepthook: copy the traceback into the current log file, then defer to the old hook."""
    if isinstance(sys.stdout, Logger):
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stdout.write_file_only(text)
        sys.stdout.flush()
    (_previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)


def _install_excepthook() -> None:
    global _previous_excepthook
    if sys.excepthook is not _log_uncaught:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _log_uncaught


def setup_logger(output: Optional[str] = None, append_banner: Optional[str] = None) -> None:
    """Replace ``sys.stdout`` by a ``Logger`` writing to ``output`` (a file or a folder).

    ``None`` does nothing. An existing log is never overwritten: a timestamp suffix
    ``-%Y-%m-%d-%H-%M-%S`` is appended instead (Dassl's behaviour) -- unless ``append_banner``
    is given, in which case the run continues the existing log after that banner line (so a
    resumed run's result lands in the ``log.txt`` the parsers read, and the interrupted
    attempt's output stays above it). Calling it again replaces the previous logger (its file
    is closed) instead of teeing into both files.
    """
    if output is None:
        return
    previous = sys.stdout if isinstance(sys.stdout, Logger) else None
    if previous is not None:
        sys.stdout = previous.console
        previous.close()
    if append_banner is not None:
        fpath = output if output.endswith((".txt", ".log")) else osp.join(output, "log.txt")
        existed = osp.isfile(fpath) and osp.getsize(fpath) > 0
        sys.stdout = Logger(fpath, mode="a")
        if existed:
            sys.stdout.write("\n" + append_banner + "\n")
    else:
        sys.stdout = Logger(_log_path(output))
    _install_excepthook()
