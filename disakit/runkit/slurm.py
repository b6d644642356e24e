"""SLURM backend of the matrix driver: thin glue over ``submitit``.

What it does, and why each piece is there:

* **One job array per phase** (``submit_phases``). A paper table is a few hundred small jobs in
  two or three phases (train, then test); one array per phase keeps the queue readable and is
  one ``sbatch`` call instead of hundreds.
* **``afterok`` between phases.** Each phase's array depends on the whole previous array, so a
  test never starts before its checkpoint exists. ``--kill-on-invalid-dep=yes`` makes SLURM
  cancel the later phases as soon as an earlier job fails, instead of leaving them pending
  forever ("DependencyNeverSatisfied"); ``wait`` reports those as ``dependency_failed``.
* **Requeue on timeout / preemption.** Each job is a ``submitit.helpers.Checkpointable`` whose
  ``checkpoint()`` resubmits itself unchanged. That is safe because a ``runkit.jobs.Job``
  resumes from the checkpoint in its own output folder and skips itself when finished.
* **A JSON record** (``slurm_jobs.json`` in the submitit folder) maps job keys to SLURM ids, so a
  later ``status`` call (another process, maybe days later) can ask ``sacct`` about them
  (``slurm_states``).

Each job runs ``job.argv()`` as a subprocess, in the submitting process's working directory,
with the worker's environment plus the job's own variables (``job.environ()`` evaluated on
the compute node, so SLURM's and the GPU's variables there are kept). Its stdout and stderr are
appended to its own files (``<log_dir>/<key>.out|.err``), which survive requeues; submitit's own
logs stay in the submitit folder.

Needs ``sbatch``/``sacct`` on PATH and accounting enabled (``sacct`` is how job states are
read). ``scripts/slurm/local_cluster.sh start`` makes such a cluster on one machine.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import submitit
from submitit.helpers import Checkpointable
from submitit.slurm.slurm import SlurmJobEnvironment, read_job_id

from .jobs import ROOT, Job
from .record import write_text_atomic

__all__ = ["SlurmResources", "SubmittedJob", "JobOutcome", "submit_phases", "wait",
           "slurm_states", "RECORD_NAME", "job_log_paths"]

log = logging.getLogger(__name__)

#: Name of the record of submitted job ids, written in the submitit folder.
RECORD_NAME = "slurm_jobs.json"

# sacct states, by what they mean for a job of ours.
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "CONFIGURING",
            "SUSPENDED", "RESIZING", "REVOKED", "SPECIAL_EXIT"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
_FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
           "PREEMPTED"}
_TERMINAL = _FAILED | {"COMPLETED", "CANCELLED"}


@dataclass
class SlurmResources:
    """What every job of the matrix asks SLURM for (one job = one training or test run).

    ``time`` is the limit of one attempt in minutes; a job that reaches it is requeued (up to
    ``max_requeues`` times) and resumes from its checkpoint, so it need not cover a whole run.
    ``mem`` is GB as a number, or a SLURM string such as ``"16G"``. ``slurm_extra`` is passed
    to sbatch as ``--KEY=VALUE`` (e.g. ``{"account": "abc", "qos": "high"}``); ``setup`` are
    shell lines run before each job (``module load ...``, ``source venv/bin/activate``).
    """

    partition: str | None = None
    time: int = 60
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    mem: float | str | None = None
    slurm_extra: dict[str, Any] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    max_requeues: int = 3
    array_parallelism: int = 256
    job_name: str = "runkit"


@dataclass
class SubmittedJob:
    """One submitted job: its key, its phase index, the submitit handle and its log files."""

    key: str
    phase: int
    handle: submitit.Job
    stdout: Path
    stderr: Path

    @property
    def job_id(self) -> str:
        """The SLURM id, ``ARRAY_TASK`` for an array task (e.g. ``"12_3"``)."""
        return str(self.handle.job_id)


@dataclass
class JobOutcome:
    """How a submitted job ended.

    ``state`` is one of ``completed``, ``failed``, ``cancelled`` (scancel'd, or requeue refused),
    ``dependency_failed`` (never ran: a job of an earlier phase did not complete).
    ``slurm_state`` is sacct's word (``FAILED``, ``TIMEOUT``, ``CANCELLED``...); ``error`` a
    one-line reason; ``log_tail`` the end of the job's own stderr/stdout (or of submitit's log
    when the job never got to run its command).
    """

    key: str
    job_id: str
    state: str
    slurm_state: str
    error: str | None = None
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "completed"


class JobCommandFailed(RuntimeError):
    """Raised on the compute node when the job's command exits non-zero (so SLURM says FAILED)."""


class _RunJob(Checkpointable):
    """The callable submitit pickles for one job: run its command, append output to its logs.

    It holds only plain data (argv, env overrides, paths), so the compute node needs this
    module but not the caller's Job subclasses. ``checkpoint()`` (inherited) resubmits the same
    call: the job itself resumes from its checkpoint and skips itself when done.
    """

    def __init__(self, key: str, argv: Sequence[str], env: Mapping[str, str], cwd: str,
                 stdout: str, stderr: str) -> None:
        self.key = key
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.stdout = stdout
        self.stderr = stderr

    def __call__(self) -> int:
        Path(self.stdout).parent.mkdir(parents=True, exist_ok=True)
        slurm_id = os.environ.get("SLURM_ARRAY_JOB_ID")
        slurm_id = (f"{slurm_id}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if slurm_id
                    else os.environ.get("SLURM_JOB_ID", "?"))
        with open(self.stdout, "ab") as out, open(self.stderr, "ab") as err:
            stamp = _dt.datetime.now().isoformat(timespec="seconds")
            restart = os.environ.get("SLURM_RESTART_COUNT", "0")
            err.write(f"[runkit.slurm] {stamp} {self.key}: SLURM job {slurm_id} on "
                      f"{socket.gethostname()} (restart {restart}): {shlex.join(self.argv)}\n"
                      .encode())
            err.flush()
            proc = subprocess.Popen(self.argv, cwd=self.cwd, env={**os.environ, **self.env},
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL)
            try:
                rc = proc.wait()
            except BaseException:
                # Timeout/preemption (submitit requeues and exits) or cancellation: stop the
                # command too; it resumes from its checkpoint next time.
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
        if rc == -_requeue_signal():
            # SLURM signals every process of the step, so the command may die of the
            # timeout/preemption signal before submitit's handler (which checkpoints and
            # requeues this call) has run here. Give the handler a moment to act.
            time.sleep(10)
        if rc != 0:
            raise JobCommandFailed(f"{self.key}: command exited with code {rc}")
        return rc


def _requeue_signal() -> int:
    """The signal submitit asks SLURM to send before the time limit (USR2 unless overridden)."""
    return int(getattr(signal, "SIG" + SlurmJobEnvironment.USR_SIG, signal.SIGUSR2))


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", key).strip("_") or "job"


def job_log_paths(key: str, log_dir: Path) -> tuple[Path, Path]:
    """The stdout and stderr files of the job ``key`` under ``log_dir``."""
    name = _safe_name(key)
    return log_dir / f"{name}.out", log_dir / f"{name}.err"


def _executor(res: SlurmResources, folder: Path, dependency: str | None) -> submitit.SlurmExecutor:
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=res.max_requeues)
    extra: dict[str, Any] = {str(k).replace("_", "-"): v for k, v in res.slurm_extra.items()}
    if dependency:
        user_dep = extra.get("dependency")
        extra["dependency"] = f"{dependency},{user_dep}" if user_dep else dependency
        # Without it a failed phase leaves the next one pending forever.
        extra.setdefault("kill-on-invalid-dep", "yes")
    params: dict[str, Any] = {
        "job_name": res.job_name,
        "time": int(res.time),
        "cpus_per_task": int(res.cpus_per_job),
        "array_parallelism": int(res.array_parallelism),
        # The compute node imports this module (the pickled callable's class) from the repo.
        "setup": [f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
                  *res.setup],
    }
    if res.partition:
        params["partition"] = res.partition
    if res.gpus_per_job:
        params["gpus_per_node"] = int(res.gpus_per_job)
    if isinstance(res.mem, str):
        params["mem"] = res.mem
    elif res.mem is not None:  # GB
        mem = float(res.mem)
        params["mem"] = f"{int(mem)}G" if mem.is_integer() else f"{round(mem * 1024)}M"
    if extra:
        params["additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def submit_phases(phases: Sequence[Sequence[Job]], res: SlurmResources, folder: Path,
                  log_dir: Path | None = None, python: str | None = None) -> list[SubmittedJob]:
    """Submit one job array per phase, each depending (``afterok``) on the previous phase.

    ``phases`` is the matrix already split into phases, in order; empty phases are skipped.
    ``folder`` holds submitit's pickles and logs and the record read by ``slurm_states``;
    ``log_dir`` (default ``folder/logs``) the jobs' own stdout/stderr files. ``python`` is the
    interpreter in each job's argv (default: this one; it must exist on the compute nodes).
    Returns the handles in submission order (give them to ``wait``).

    The dependency is on the whole previous array, not on each job's ``deps``: SLURM can only
    give one array one dependency, and a test phase needs every training job anyway. If sbatch
    fails for a later phase, the earlier arrays stay queued (and recorded); resubmitting is safe.
    """
    folder = Path(folder).resolve()
    log_dir = Path(log_dir).resolve() if log_dir is not None else folder / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    seen: dict[str, str] = {}
    for phase in phases:
        for job in phase:
            name = _safe_name(job.key)
            if name in seen:
                raise ValueError(f"jobs {seen[name]!r} and {job.key!r} would share log files "
                                 f"({name}.out): keys must be unique")
            seen[name] = job.key
    cwd = os.getcwd()
    submitted: list[SubmittedJob] = []
    previous_array: str | None = None
    for index, phase in enumerate(phases):
        if not phase:
            continue
        ex = _executor(res, folder, f"afterok:{previous_array}" if previous_array else None)
        calls = []
        for job in phase:
            stdout, stderr = job_log_paths(job.key, log_dir)
            # environ(base={}) is just the job's own variables; the node's environment is added
            # there, at run time.
            calls.append((job.key, stdout, stderr,
                          _RunJob(job.key, job.argv(python), job.environ(base={}), cwd,
                                  str(stdout), str(stderr))))
        with ex.batch():
            handles = [ex.submit(call) for *_, call in calls]
        new = [SubmittedJob(key, index, handle, stdout, stderr)
               for (key, stdout, stderr, _), handle in zip(calls, handles)]
        submitted.extend(new)
        _write_record(folder, new)  # at once: a later phase's sbatch may still fail
        log.info("phase %d: %d job(s) submitted as SLURM job %s%s", index, len(phase),
                 handles[0].job_id.split("_")[0],
                 f" (afterok:{previous_array})" if previous_array else "")
        previous_array = str(handles[0].job_id).split("_")[0]
    return submitted


def _write_record(folder: Path, submitted: Iterable[SubmittedJob]) -> None:
    """Merge the new submissions into ``folder/slurm_jobs.json`` (the newest id of a key wins)."""
    path = folder / RECORD_NAME
    record = _read_record(folder)
    now = _dt.datetime.now().isoformat(timespec="seconds")
    for sj in submitted:
        record[sj.key] = {"job_id": sj.job_id, "phase": sj.phase, "stdout": str(sj.stdout),
                          "stderr": str(sj.stderr), "submitted": now}
    write_text_atomic(path, json.dumps({"jobs": record}, indent=1, sort_keys=True))


def _read_record(folder: Path) -> dict[str, dict[str, Any]]:
    path = Path(folder) / RECORD_NAME
    if not path.exists():
        return {}
    return dict(json.loads(path.read_text()).get("jobs", {}))


def _expand(job_id: str, row: dict[str, str], into: dict[str, dict[str, str]]) -> None:
    """Store ``row`` under every id that ``job_id`` names (``12``, ``12_3``, ``12_[4-7]``)."""
    for ident in read_job_id(job_id):
        if len(ident) >= 3:
            for task in range(int(ident[1]), int(ident[2]) + 1):
                into[f"{ident[0]}_{task}"] = row
        else:
            into["_".join(ident[:2])] = row


def _job_states(job_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """State, Reason and NodeList of the given SLURM ids (``12`` or ``12_3``), by id.

    ``sacct`` knows every job, but its database lags the controller by a moment; ``squeue -t
    all`` is the controller's own view of its current and recently ended jobs. So sacct's
    answer is overridden by squeue's wherever squeue still knows the job.
    """
    mains = sorted({str(j).split("_")[0] for j in job_ids})
    if not mains:
        return {}
    cmd = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Reason,NodeList", "-j", ",".join(mains)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()} "
                           "(SLURM accounting must be enabled to read job states)")
    info: dict[str, dict[str, str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split("|")
        if len(parts) >= 4 and parts[0] and "." not in parts[0]:
            _expand(parts[0], {"State": (parts[1].split() or ["UNKNOWN"])[0], "Reason": parts[2],
                               "NodeList": parts[3]}, info)
    # One squeue call for all our jobs (with -j, one id that left the controller fails it all).
    proc = subprocess.run(["squeue", "--me", "-h", "-r", "-t", "all", "-o", "%i|%T|%r|%N"],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        wanted = set(mains)
        for line in proc.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 4 and parts[0].split("_")[0] in wanted:
                _expand(parts[0], {"State": (parts[1].split() or ["UNKNOWN"])[0],
                                   "Reason": parts[2], "NodeList": parts[3] or "None assigned"},
                        info)
    return info


def _never_ran_for_dependency(row: Mapping[str, str]) -> bool:
    return (row.get("State") == "CANCELLED" and row.get("NodeList", "").startswith("None")
            and row.get("Reason", "").startswith("Dependency"))


def _normalise(row: Mapping[str, str] | None) -> str:
    if not row:
        return "unknown"
    state = row.get("State", "UNKNOWN")
    if state in _PENDING:
        return "pending"
    if state in _RUNNING:
        return "running"
    if state == "COMPLETED":
        return "completed"
    if state == "CANCELLED":
        return "dependency_failed" if _never_ran_for_dependency(row) else "cancelled"
    if state in _FAILED:
        return "failed"
    return "unknown"


def slurm_states(folder: Path, raw: bool = False) -> dict[str, str]:
    """The SLURM state of every job recorded in ``folder`` (the submitit folder), by job key.

    For a ``status`` view: one of ``pending``, ``running``, ``completed``, ``failed``,
    ``cancelled``, ``dependency_failed`` or ``unknown`` (not in accounting any more);
    ``raw=True`` gives SLURM's own word instead (``TIMEOUT``, ``OUT_OF_MEMORY``...). One
    sacct and one squeue call for all jobs. Raises ``RuntimeError`` when sacct fails (no
    accounting, no cluster).
    """
    record = _read_record(folder)
    info = _job_states(entry["job_id"] for entry in record.values())
    out: dict[str, str] = {}
    for key, entry in record.items():
        row = info.get(entry["job_id"])
        out[key] = (row or {}).get("State", "UNKNOWN") if raw else _normalise(row)
    return out


def _tail(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _log_tail(sj: SubmittedJob, lines: int) -> str:
    parts = []
    for path in (sj.stderr, sj.stdout):
        text = _tail(path, lines)
        if text.strip():
            parts.append(f"--- {path} ---\n{text}")
    if not parts:  # the command never ran: show submitit's own log
        for path in (sj.handle.paths.stderr, sj.handle.paths.stdout):
            text = _tail(path, lines)
            if text.strip():
                parts.append(f"--- {path} ---\n{text}")
    return "\n".join(parts)


def _last_trace_line(message: str) -> str:
    """The exception line of the traceback inside submitit's FailedJobError message."""
    parts = message.split("-" * 22)
    trace = parts[1] if len(parts) >= 3 else message
    lines = [ln.strip() for ln in trace.splitlines() if ln.strip()]
    return lines[-1] if lines else "job failed"


def _outcome(sj: SubmittedJob, row: Mapping[str, str] | None, earlier_failed: bool,
             tail_lines: int) -> JobOutcome:
    slurm_state = (row or {}).get("State", "UNKNOWN")
    if sj.handle.paths.result_pickle.exists() or slurm_state == "COMPLETED":
        exc = sj.handle.exception()  # reads submitit's result pickle (waits briefly for it)
        if exc is None:
            return JobOutcome(sj.key, sj.job_id, "completed", slurm_state)
        error = _last_trace_line(str(exc))
        state = "cancelled" if slurm_state == "CANCELLED" else "failed"
        return JobOutcome(sj.key, sj.job_id, state, slurm_state, error.strip(),
                          _log_tail(sj, tail_lines))
    if slurm_state == "CANCELLED":
        if earlier_failed and (row or {}).get("NodeList", "").startswith("None"):
            return JobOutcome(sj.key, sj.job_id, "dependency_failed", slurm_state,
                              "not run: a job of an earlier phase did not complete")
        return JobOutcome(sj.key, sj.job_id, "cancelled", slurm_state, "cancelled (scancel)",
                          _log_tail(sj, tail_lines))
    return JobOutcome(sj.key, sj.job_id, "failed", slurm_state,
                      f"SLURM state {slurm_state} and no result", _log_tail(sj, tail_lines))


def wait(submitted: Sequence[SubmittedJob], poll_s: float = 10.0, timeout_s: float | None = None,
         tail_lines: int = 30) -> dict[str, JobOutcome]:
    """Wait until every submitted job has ended; return each job's outcome by key.

    Polls SLURM (one sacct and one squeue call for all jobs) every ``poll_s`` seconds.
    Requeued jobs (timeout, preemption) are waited for through their new attempts. Raises
    ``TimeoutError`` after ``timeout_s`` seconds (the jobs keep running).
    """
    pending = list(submitted)
    outcomes: dict[str, JobOutcome] = {}
    failed_phases: set[int] = set()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while pending:
        info = _job_states(sj.job_id for sj in pending)
        still: list[SubmittedJob] = []
        for sj in pending:  # in phase order, so `still` holds the unfinished earlier jobs
            row = info.get(sj.job_id) or {}
            state = row.get("State", "UNKNOWN")
            if state not in _TERMINAL:
                still.append(sj)
                continue
            never_ran = state == "CANCELLED" and row.get("NodeList", "").startswith("None")
            if never_ran and any(o.phase < sj.phase for o in still):
                # Accounting can lag behind: wait until the earlier phases' ends are known, to
                # tell a dependency cancel from a plain scancel.
                still.append(sj)
                continue
            log.debug("%s (%s): %s", sj.key, sj.job_id, row)
            earlier = any(p < sj.phase for p in failed_phases)
            outcome = _outcome(sj, row, earlier or _never_ran_for_dependency(row), tail_lines)
            outcomes[sj.key] = outcome
            if not outcome.ok:
                failed_phases.add(sj.phase)
        pending = still
        if pending:
            if deadline is not None and time.monotonic() > deadline:
                jobs = ", ".join(f"{sj.key} ({sj.job_id})" for sj in pending[:10])
                raise TimeoutError(f"{len(pending)} SLURM job(s) still running after "
                                   f"{timeout_s} s: {jobs}")
            time.sleep(poll_s)
    return {sj.key: outcomes[sj.key] for sj in submitted}


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m runkit.slurm FOLDER``: print the recorded jobs' states (a quick status view)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m runkit.slurm SUBMITIT_FOLDER", file=sys.stderr)
        return 2
    for key, state in sorted(slurm_states(Path(args[0])).items()):
        print(f"{state:18s} {key}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
