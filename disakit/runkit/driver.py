"""``scripts/reproduce.py``: run a paper's whole table, locally or on SLURM, and report it.

    python scripts/reproduce.py [run] --methods DiSa CoOp --settings base2new xd dg fewshot \\
        --datasets all --seeds 1 2 3 [--shots 1 2 4 8 16] --backend local|slurm \\
        [--gpus N | --workers N] [--dry-run] [KEY VALUE ...]
    python scripts/reproduce.py status  (same selection)
    python scripts/reproduce.py report  (same selection)

``DATA`` and ``OUTPUT`` (and ``SHOTS``, ``CFG``) come from the environment as for the per-job
scripts, whose jobs and folders the matrix reproduces exactly. A run skips what is finished
(with the same configuration), resumes what was interrupted, re-runs what failed, and ends with
the report under ``$OUTPUT/report/``. Trailing ``KEY VALUE`` options apply to every job and are
part of each job's identity.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

from . import matrix
from .jobs import Job
from .protocol import ProtocolError
from .state import JobState

__all__ = ["main", "build_parser", "split_opts"]

_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")
COMMANDS = ("run", "status", "report")


def split_opts(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split off the trailing ``KEY VALUE`` options (the first ``SECTION.KEY`` token on)."""
    argv = list(argv)
    for i, token in enumerate(argv):
        if token == "--":
            return argv[:i], argv[i + 1:]
        if _KEY.match(token) and (i == 0 or not argv[i - 1].startswith("--slurm-extra")):
            return argv[:i], argv[i:]
    return argv, []


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/reproduce.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", choices=COMMANDS, default="run")
    p.add_argument("--methods", nargs="+", required=True,
                   help=f"trainers: {', '.join(matrix.method_names())}")
    p.add_argument("--settings", nargs="+", default=["base2new"], choices=list(matrix.SETTINGS))
    p.add_argument("--datasets", nargs="+", default=["all"],
                   help="'all' (each setting's paper list) or dataset names")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--shots", nargs="+", type=int, default=list(matrix.FEW_SHOTS),
                   help="few-shot setting only")
    p.add_argument("--backend", choices=("local", "slurm"), default="local")
    p.add_argument("--gpus", type=int, default=0, help="local: one worker per GPU (0..N-1)")
    p.add_argument("--workers", type=int, default=1, help="local: CPU workers (without --gpus)")
    p.add_argument("--dry-run", action="store_true", help="list the jobs and their state only")
    p.add_argument("--no-report", action="store_true", help="run: skip the report at the end")
    slurm = p.add_argument_group("SLURM backend (through submitit)")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", type=int, default=240, help="minutes per job attempt")
    slurm.add_argument("--gpus-per-job", type=int, default=1)
    slurm.add_argument("--cpus-per-job", type=int, default=8)
    slurm.add_argument("--mem", help="e.g. 32G")
    slurm.add_argument("--slurm-extra", nargs="*", default=[], metavar="KEY=VALUE",
                       help="extra sbatch parameters, e.g. account=lab qos=normal")
    slurm.add_argument("--no-wait", action="store_true",
                       help="submit and return; check later with `reproduce.py status`")
    return p


def _slurm_extra(pairs: Sequence[str]) -> dict[str, str]:
    extra = {}
    for pair in pairs:
        if "=" not in pair:
            raise SystemExit(f"Error: --slurm-extra takes KEY=VALUE pairs, got {pair!r} "
                             "(e.g. --slurm-extra account=mylab)")
        key, value = pair.split("=", 1)
        extra[key] = value
    return extra


def _slurm_view(jobs: Sequence[Job]) -> dict[str, str]:
    """SLURM's word on the jobs this table submitted (empty when it never used SLURM)."""
    if not jobs:
        return {}
    folder = Path(dict(jobs[0].env)["OUTPUT"]) / "reproduce" / "slurm"
    from . import slurm

    if not (folder / slurm.RECORD_NAME).exists():
        return {}
    try:
        return slurm.slurm_states(folder)
    except RuntimeError as err:  # sacct unreachable: the folder states still say a lot
        print(f"(SLURM states unavailable: {err})")
        return {}


def _print_jobs(jobs: Sequence[Job], states: dict[str, JobState],
                slurm_states: Optional[dict[str, str]] = None) -> None:
    width = max((len(j.key) for j in jobs), default=10)
    slurm_states = slurm_states or {}
    for job in jobs:
        state = states[job.key]
        detail = f"  ({state.detail})" if state.detail and state.status != "done" else ""
        queue = f" slurm:{slurm_states[job.key]:<10}" if job.key in slurm_states else ""
        print(f"{job.key:<{width}}  {state.status:<11}{queue} {job.out_dir}{detail}")
    counts = Counter(s.status for s in states.values())
    print(f"{len(jobs)} jobs: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))


def _report(jobs: Sequence[Job], ns: argparse.Namespace) -> None:
    from .report import build_report

    out_root = Path(dict(jobs[0].env)["OUTPUT"]) if jobs else Path(os.environ.get("OUTPUT", "."))
    written = build_report(list(jobs), out_root, settings=ns.settings)
    for setting, paths in written.items():
        print(f"[report] {setting}: " + ", ".join(str(p) for p in paths))
        md = [p for p in paths if str(p).endswith(".md")]
        if md:
            print(Path(md[0]).read_text())


def _run_local(todo: list[Job], ns: argparse.Namespace, log_dir: Path) -> bool:
    from .local import run_local

    gpus = [str(i) for i in range(ns.gpus)] if ns.gpus else None
    outcomes = run_local(todo, log_dir, workers=ns.workers, gpus=gpus)
    bad = {k: o for k, o in outcomes.items() if o.state != "completed"}
    for key, outcome in sorted(bad.items()):
        print(f"[reproduce] {key}: {outcome.state}"
              + (f" (exit {outcome.returncode}, log {outcome.log})" if outcome.log else ""))
    return not bad


def _run_slurm(todo: list[Job], ns: argparse.Namespace, folder: Path) -> bool:
    from . import slurm

    res = slurm.SlurmResources(partition=ns.partition, time=ns.time,
                               gpus_per_job=ns.gpus_per_job, cpus_per_job=ns.cpus_per_job,
                               mem=ns.mem, slurm_extra=_slurm_extra(ns.slurm_extra))
    submitted = slurm.submit_phases(matrix.phases_of(todo), res, folder)
    for s in submitted:
        print(f"[reproduce] submitted {s.key} as SLURM job {s.job_id}")
    if ns.no_wait:
        return True
    outcomes = slurm.wait(submitted)
    bad = {k: o for k, o in outcomes.items() if not o.ok}
    for key, outcome in sorted(bad.items()):
        print(f"[reproduce] {key}: {outcome.state} {outcome.error or ''}\n{outcome.log_tail}")
    return not bad


def main(argv: Optional[Sequence[str]] = None) -> int:
    flags, opts = split_opts(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(flags)
    try:
        jobs = matrix.expand(ns.methods, ns.settings, ns.datasets, ns.seeds, ns.shots, opts)
    except (matrix.MatrixError, ProtocolError) as err:
        print(f"Error: {err}", file=sys.stderr)
        return 2
    if not jobs:
        print("Error: the selection has no jobs (check --settings against --datasets)",
              file=sys.stderr)
        return 2
    if ns.command == "report":
        _report(jobs, ns)
        return 0
    states = matrix.job_states(jobs)
    if ns.command == "status" or ns.dry_run:
        _print_jobs(jobs, states, _slurm_view(jobs))
        if ns.dry_run and ns.command == "run":
            todo = [j for j in jobs if states[j.key].needs_run]
            print(f"--dry-run: {len(todo)} of {len(jobs)} jobs would run; e.g.\n  "
                  + "\n  ".join(shlex.join(j.argv()) for j in todo[:3]))
        return 0
    mismatched = [k for k, s in states.items() if s.status == "mismatch"]
    if mismatched and not os.environ.get("OVERWRITE"):
        print("Error: these folders hold runs of another configuration (the jobs would refuse "
              "them):\n  " + "\n  ".join(mismatched) + "\nUse another OUTPUT, or OVERWRITE=1 to "
              "move those runs aside.", file=sys.stderr)
        return 2
    running = [k for k, s in states.items() if s.status == "running"]
    todo = [j for j in jobs if states[j.key].needs_run or j.key in mismatched]
    print(f"[reproduce] {len(jobs)} jobs: {len(jobs) - len(todo) - len(running)} done, "
          f"{len(running)} running elsewhere, {len(todo)} to run ({ns.backend} backend)")
    out_root = Path(dict(jobs[0].env)["OUTPUT"])
    ok = True
    if todo:
        work = out_root / "reproduce"
        ok = (_run_local(todo, ns, work / "logs") if ns.backend == "local"
              else _run_slurm(todo, ns, work / "slurm"))
    if not ns.no_report and not (ns.backend == "slurm" and ns.no_wait):
        _report(jobs, ns)
    return 0 if ok else 1
