"""The local backend: a pool of workers on this machine, one job per GPU or N CPU workers.

Each job is the per-job script's command (``Job.argv``) run as a subprocess in its own process
group, so a Ctrl-C stops every running job cleanly (they resume from their checkpoints on the
next run). A job starts when the jobs it depends on succeeded; a failure blocks only its
dependents. Its console output goes to ``<log_dir>/<key>.log``; its ``log.txt`` stays in its
job folder as usual.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TextIO

from .jobs import Job

__all__ = ["LocalOutcome", "run_local", "log_path"]


@dataclass
class LocalOutcome:
    """How one job ended: ``completed``, ``failed`` (exit code), ``blocked`` or ``stopped``."""

    key: str
    state: str
    returncode: Optional[int] = None
    seconds: float = 0.0
    log: Optional[Path] = None


def log_path(key: str, log_dir: Path) -> Path:
    return log_dir / (key.replace("/", "__") + ".log")


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen
    slot: Optional[str]
    start: float
    log: TextIO = field(repr=False)


def run_local(jobs: Sequence[Job], log_dir: Path, workers: int = 1,
              gpus: Optional[Sequence[str]] = None, python: Optional[str] = None,
              progress: TextIO = sys.stdout, poll_s: float = 0.2) -> dict[str, LocalOutcome]:
    """Run ``jobs`` (already the ones that need running) respecting their ``deps``.

    ``gpus`` (e.g. ``["0", "1"]``) gives one worker per GPU with ``CUDA_VISIBLE_DEVICES`` set;
    otherwise ``workers`` CPU workers. Dependencies outside ``jobs`` count as satisfied (they
    were done before). Returns every job's outcome; Ctrl-C kills the running jobs' process
    groups and returns with the unfinished ones ``stopped``.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    slots: list[Optional[str]] = list(gpus) if gpus else [None] * max(1, workers)
    free = list(slots)
    pending = list(jobs)
    keys = {job.key for job in jobs}
    outcomes: dict[str, LocalOutcome] = {}
    running: list[_Running] = []
    durations: list[float] = []
    total = len(jobs)

    def report() -> None:
        done = sum(o.state == "completed" for o in outcomes.values())
        failed = sum(o.state in ("failed", "blocked") for o in outcomes.values())
        left = total - len(outcomes)
        eta = ""
        if durations and left:
            eta = f", ETA {_fmt(sum(durations) / len(durations) * left / len(slots))}"
        print(f"[reproduce] {done}/{total} done, {len(running)} running, {failed} failed"
              f"{eta}", file=progress, flush=True)

    def start(job: Job, slot: Optional[str]) -> None:
        env = job.environ()
        if slot is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot
        path = log_path(job.key, log_dir)
        log = open(path, "a")
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(job.argv(python))}\n")
        log.flush()
        proc = subprocess.Popen(job.argv(python), env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        running.append(_Running(job, proc, slot, time.time(), log))

    try:
        while pending or running:
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                r.log.close()
                free.append(r.slot)
                seconds = time.time() - r.start
                ok = r.proc.returncode == 0
                outcomes[r.job.key] = LocalOutcome(r.job.key, "completed" if ok else "failed",
                                                   r.proc.returncode, seconds,
                                                   log_path(r.job.key, log_dir))
                if ok:
                    durations.append(seconds)
                else:
                    print(f"[reproduce] FAILED {r.job.key} (exit {r.proc.returncode}); see "
                          f"{log_path(r.job.key, log_dir)}", file=progress, flush=True)
                report()
            for job in list(pending):
                dep_states = [outcomes[d].state if d in outcomes else
                              ("waiting" if d in keys else "completed") for d in job.deps]
                if any(s in ("failed", "blocked") for s in dep_states):
                    pending.remove(job)
                    outcomes[job.key] = LocalOutcome(job.key, "blocked")
                elif all(s == "completed" for s in dep_states) and free:
                    pending.remove(job)
                    start(job, free.pop(0))
            if running:
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for r in running:
            try:
                os.killpg(r.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for r in running:
            try:
                r.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(r.proc.pid, signal.SIGKILL)
                r.proc.wait()
            r.log.close()
            outcomes[r.job.key] = LocalOutcome(r.job.key, "stopped")
        for job in pending:
            outcomes[job.key] = LocalOutcome(job.key, "stopped")
        print("\n[reproduce] stopped; run the same command again to continue (interrupted jobs "
              "resume from their checkpoints)", file=progress, flush=True)
    return outcomes
