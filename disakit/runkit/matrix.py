"""A paper table as jobs: methods x settings x datasets x seeds (x shots), with dependencies.

Each job is exactly one call of a per-job script (``scripts/<method>/<phase>.sh``), so the
matrix writes the same folders a researcher running the scripts by hand would, and a table
started one way can be finished the other.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from . import protocol
from .jobs import Job
from .state import JobState, job_state

__all__ = ["BENCHMARKS", "XD_TARGETS", "DG_TARGETS", "SETTINGS", "MatrixError", "expand",
           "phases_of", "job_states", "method_names"]

# The papers' dataset lists (configs/datasets/<name>.yaml).
BENCHMARKS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers",
              "food101", "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")
XD_TARGETS = BENCHMARKS[1:]
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
SETTINGS = {"base2new": BENCHMARKS, "xd": XD_TARGETS, "dg": DG_TARGETS, "fewshot": BENCHMARKS}
FEW_SHOTS = (1, 2, 4, 8, 16)


class MatrixError(ValueError):
    """A matrix request that names an unknown method, setting or dataset."""


def method_names() -> list[str]:
    """The trainers the matrix can run (those with training protocols)."""
    return [m for m, table in protocol.METHODS.items() if "base2new" in table]


def _canonical_method(name: str) -> str:
    by_lower = {m.lower(): m for m in method_names()}
    if name.lower() not in by_lower:
        raise MatrixError(f"unknown method {name!r}; the methods are: {', '.join(method_names())}")
    return by_lower[name.lower()]


def _datasets_for(setting: str, wanted: Sequence[str]) -> list[str]:
    available = SETTINGS[setting]
    if not wanted or list(wanted) == ["all"]:
        return list(available)
    return [d for d in available if d in wanted]


def _check_datasets(settings: Sequence[str], wanted: Sequence[str]) -> None:
    if not wanted or list(wanted) == ["all"]:
        return
    known = {d for s in settings for d in SETTINGS[s]}
    unknown = [d for d in wanted if d not in known]
    if unknown:
        raise MatrixError(f"dataset(s) {unknown} are in none of the settings {list(settings)}; "
                          f"they take: " + "; ".join(f"{s}: {', '.join(SETTINGS[s])}"
                                                     for s in settings))


def _job(setting: str, phase: str, trainer: str, dataset: str, seed: int, shots: int,
         positional: list[str], opts: Sequence[str], env: Mapping[str, str],
         deps: tuple[str, ...] = ()) -> Job:
    ns = protocol.build_parser().parse_args(["--trainer", trainer, phase, *positional, *opts])
    _, out_dir, _ = protocol.phase_jobs(ns, env)
    key = f"{trainer}/{phase}/{dataset}/" + (f"{shots}shots/" if phase == "few_shot" else "") \
        + f"seed{seed}"
    return Job(key=key, setting=setting, phase=phase, trainer=trainer, dataset=dataset,
               seed=seed, shots=shots, positional=tuple(positional), opts=tuple(opts),
               out_dir=out_dir, deps=deps, env=tuple(sorted(env.items())))


def expand(methods: Sequence[str], settings: Sequence[str], datasets: Sequence[str] = ("all",),
           seeds: Sequence[int] = (1, 2, 3), shots: Sequence[int] = FEW_SHOTS,
           opts: Sequence[str] = (), env: Optional[Mapping[str, str]] = None) -> list[Job]:
    """The jobs of the table, trainings first, each test after the training it evaluates.

    ``env`` holds DATA, OUTPUT (made absolute), SHOTS and CFG as the scripts read them (default:
    this process's environment); ``opts`` are trailing ``KEY VALUE`` options for every job.
    """
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        raise MatrixError(f"unknown setting(s) {unknown}; the settings are: {', '.join(SETTINGS)}")
    _check_datasets(settings, datasets)
    if len(opts) % 2:
        raise MatrixError(f"options must be KEY VALUE pairs, got {list(opts)}")
    env = dict(os.environ if env is None else env)
    job_env = {k: env[k] for k in ("DATA", "OUTPUT", "SHOTS", "CFG") if env.get(k)}
    job_env["OUTPUT"] = str(Path(job_env.get("OUTPUT", "./output")).resolve())
    job_env["DATA"] = str(Path(job_env.get("DATA", "./data")).resolve())
    k16 = protocol.effective_shots(list(opts), job_env)  # base2new/xd shots (SHOTS or opts)
    jobs: dict[str, Job] = {}

    def add(job: Job) -> str:
        jobs.setdefault(job.key, job)
        return job.key

    for method in (_canonical_method(m) for m in methods):
        for seed in seeds:
            s = str(seed)
            for setting in settings:
                names = _datasets_for(setting, datasets)
                if setting == "base2new":
                    for d in names:
                        train = add(_job(setting, "base2new_train", method, d, seed, k16, [d, s],
                                         opts, job_env))
                        add(_job(setting, "base2new_test", method, d, seed, k16, [d, s], opts,
                                 job_env, (train,)))
                elif setting in ("xd", "dg") and names:
                    train = add(_job(setting, "xd_train", method, "imagenet", seed, k16, [s],
                                     opts, job_env))
                    phase = "xd_test" if setting == "xd" else "dg_test"
                    for d in names:
                        add(_job(setting, phase, method, d, seed, k16, [d, s], opts, job_env,
                                 (train,)))
                elif setting == "fewshot":
                    for d in names:
                        for k in shots:
                            add(_job(setting, "few_shot", method, d, seed, k, [d, str(k), s],
                                     opts, job_env))
    order = {key: i for i, key in enumerate(jobs)}
    return sorted(jobs.values(), key=lambda j: (not j.is_train, order[j.key]))


def phases_of(jobs: Iterable[Job]) -> list[list[Job]]:
    """[trainings, evaluations]: what a scheduler runs one after the other."""
    jobs = list(jobs)
    return [[j for j in jobs if j.is_train], [j for j in jobs if not j.is_train]]


def job_states(jobs: Sequence[Job]) -> dict[str, JobState]:
    """Each job's state, judged against the configuration it would run with now.

    A folder that does not exist is ``pending`` without computing the job's identity (which
    resolves its whole config), so a fresh 1,000-job table is read in a blink.
    """
    states = {}
    defaults: Optional[dict] = None
    for job in jobs:
        if not job.out_dir.exists():
            states[job.key] = JobState("pending")
            continue
        ns = protocol.build_parser().parse_args(
            ["--trainer", job.trainer, job.phase, *job.positional, *job.opts])
        args, out_dir, _ = protocol.phase_jobs(ns, dict(job.env))
        defaults = protocol.default_identity() if defaults is None else defaults
        states[job.key] = job_state(out_dir, job.is_train, protocol.requested_identity(args),
                                    defaults)
    return states
