"""The SLURM backend (runkit.slurm) against a real local cluster, with tiny fake jobs.

Each fake job is a ``runkit.jobs.Job`` whose command is a short ``python -c`` snippet that
leaves time-stamped marker files, so the tests can see what ran, when, and how often.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_fixture import slurm_cluster  # noqa: F401  (the fixture)

from disakit.runkit.jobs import Job
from disakit.runkit.slurm import (
    RECORD_NAME,
    SlurmResources,
    _executor,
    slurm_states,
    submit_phases,
    wait,
)

pytestmark = pytest.mark.usefixtures("slurm_cluster")

POLL = 0.3
WAIT_S = 120


@dataclass(frozen=True)
class CmdJob(Job):
    """A Job whose command is ``python -c CODE`` (instead of a protocol phase)."""

    code: str = ""

    def argv(self, python: str | None = None) -> list[str]:
        return [python or sys.executable, "-c", self.code]


# The snippet's prelude: MARK (a folder) comes from the job's own environment variables.
PRELUDE = ("import os, sys, time, pathlib; M = pathlib.Path(os.environ['MARK']); "
           "stamp = lambda name: (M / name).write_text(repr(time.time())); ")


def fake(key: str, body: str, mark: Path, phase: str = "base2new_train") -> CmdJob:
    return CmdJob(key=key, setting="base2new", phase=phase, trainer="Fake", dataset="fake",
                  seed=1, shots=16, positional=(), opts=(), out_dir=mark,
                  env=(("MARK", str(mark)),), code=PRELUDE + body)


def res() -> SlurmResources:
    return SlurmResources(partition="debug", time=5, cpus_per_job=1)


@pytest.fixture
def submit():
    """``submit_phases`` that scancels what the test left behind (a failed test's sleepers
    would otherwise hold the node's CPUs for the next tests)."""
    submitted = []

    def _submit(*args, **kwargs):
        jobs = submit_phases(*args, **kwargs)
        submitted.extend(jobs)
        return jobs

    yield _submit
    ids = sorted({sj.job_id.split("_")[0] for sj in submitted})
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def wait_for_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.2)


def test_phases_run_in_order_under_afterok(tmp_path, submit):
    mark = tmp_path / "mark"
    mark.mkdir()
    train = [fake(f"train/{k}", f"stamp('{k}.start'); print('hello from {k}'); time.sleep(1); "
                  f"stamp('{k}.end')", mark) for k in ("a", "b")]
    test = [fake("test/c", "assert (M / 'a.end').exists() and (M / 'b.end').exists(); "
                 "stamp('c.start')", mark, phase="base2new_test")]
    folder = tmp_path / "submitit"
    submitted = submit([train, [], test], res(), folder)

    # One array per (non-empty) phase; the second depends on the whole first array.
    first, second = {s.job_id.split("_")[0] for s in submitted[:2]}, submitted[2].job_id
    assert len(first) == 1 and submitted[0].job_id.endswith("_0")
    sbatch = (folder / f"{second.split('_')[0]}_submission.sh").read_text()
    assert f"--dependency=afterok:{first.pop()}" in sbatch
    assert "--kill-on-invalid-dep=yes" in sbatch

    outcomes = wait(submitted, poll_s=POLL, timeout_s=WAIT_S)
    assert {k: o.state for k, o in outcomes.items()} == {
        "train/a": "completed", "train/b": "completed", "test/c": "completed"}, outcomes
    ends = [float((mark / f"{k}.end").read_text()) for k in ("a", "b")]
    assert float((mark / "c.start").read_text()) >= max(ends)
    # The job's own stdout went to its own file.
    assert "hello from a" in submitted[0].stdout.read_text()
    assert submitted[0].stdout.name == "train_a.out"
    record = json.loads((folder / RECORD_NAME).read_text())["jobs"]
    assert record["test/c"]["job_id"] == submitted[2].job_id and record["test/c"]["phase"] == 2
    assert slurm_states(folder) == {"train/a": "completed", "train/b": "completed",
                                    "test/c": "completed"}


def test_failed_job_stops_later_phases_and_is_reported(tmp_path, submit):
    mark = tmp_path / "mark"
    mark.mkdir()
    phase1 = [fake("train/ok", "stamp('ok')", mark),
              fake("train/bad", "print('boom: no checkpoint here', file=sys.stderr); "
                   "sys.exit(3)", mark)]
    phase2 = [fake("test/never", "stamp('never')", mark, phase="base2new_test")]
    folder = tmp_path / "submitit"
    submitted = submit([phase1, phase2], res(), folder)
    outcomes = wait(submitted, poll_s=POLL, timeout_s=WAIT_S)

    assert outcomes["train/ok"].ok
    bad = outcomes["train/bad"]
    assert bad.state == "failed" and bad.slurm_state == "FAILED"
    assert "train/bad" in bad.error and "code 3" in bad.error, bad.error
    assert "boom: no checkpoint here" in bad.log_tail
    assert outcomes["test/never"].state == "dependency_failed"
    assert not (mark / "never").exists()
    assert slurm_states(folder) == {"train/ok": "completed", "train/bad": "failed",
                                    "test/never": "dependency_failed"}
    assert slurm_states(folder, raw=True)["train/bad"] == "FAILED"


def test_scancel_is_reported_and_states_view_follows(tmp_path, submit):
    mark = tmp_path / "mark"
    mark.mkdir()
    phase1 = [fake("train/long", "stamp('started'); time.sleep(300)", mark)]
    phase2 = [fake("test/after", "stamp('after')", mark, phase="base2new_test")]
    folder = tmp_path / "submitit"
    submitted = submit([phase1, phase2], res(), folder)
    wait_for_file(mark / "started")
    assert slurm_states(folder) == {"train/long": "running", "test/after": "pending"}

    subprocess.run(["scancel", submitted[0].job_id], check=True)
    outcomes = wait(submitted, poll_s=POLL, timeout_s=WAIT_S)
    assert outcomes["train/long"].state == "cancelled"
    assert outcomes["train/long"].slurm_state == "CANCELLED"
    assert outcomes["test/after"].state == "dependency_failed"
    assert not (mark / "after").exists()
    assert slurm_states(folder) == {"train/long": "cancelled", "test/after": "dependency_failed"}


def test_requeued_after_preemption_signal_and_resumes(tmp_path, submit):
    """The timeout/preemption signal makes submitit checkpoint (resubmit the same call) and
    requeue; the second attempt finds its first attempt's state and finishes."""
    mark = tmp_path / "mark"
    mark.mkdir()
    body = ("n = len(list(M.glob('attempt*'))); stamp(f'attempt{n}'); "
            "time.sleep(300) if n == 0 else stamp('done')")
    submitted = submit([[fake("train/requeue", body, mark)]], res(), tmp_path / "submitit")
    wait_for_file(mark / "attempt0")
    # What SLURM sends before the time limit (--signal=USR2@90), here right away.
    subprocess.run(["scancel", "--signal=USR2", submitted[0].job_id], check=True)
    outcomes = wait(submitted, poll_s=POLL, timeout_s=WAIT_S)
    assert outcomes["train/requeue"].ok, outcomes
    assert (mark / "done").exists() and (mark / "attempt1").exists()
    assert submitted[0].stderr.read_text().count("[runkit.slurm]") == 2


def test_resources_become_sbatch_flags(tmp_path):
    r = SlurmResources(partition="debug", time=7, gpus_per_job=2, cpus_per_job=3, mem="3G",
                       slurm_extra={"qos": "high", "dependency": "afterany:1"},
                       setup=["echo setup-line"])
    text = _executor(r, tmp_path, "afterok:5")._make_submission_file_text("cmd", "uid")
    for flag in ("--partition=debug", "--time=7", "--gpus-per-node=2", "--cpus-per-task=3",
                 "--mem=3G", "--qos=high", "--dependency=afterok:5,afterany:1",
                 "--kill-on-invalid-dep=yes"):
        assert f"#SBATCH {flag}\n" in text, flag
    assert "echo setup-line" in text and "export PYTHONPATH=" in text
    text = _executor(SlurmResources(mem=2.5), tmp_path, None)._make_submission_file_text("c", "u")
    assert "#SBATCH --mem=2560M" in text and "dependency" not in text
