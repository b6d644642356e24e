"""Pytest fixture: a real single-node SLURM cluster (``scripts/slurm/local_cluster.sh``).

Imported by the SLURM tests (``from slurm_fixture import slurm_cluster``). Started at most once
per test session, and not at all when it already answers. Under CI (``CI=true``) a cluster
that cannot start fails the tests: a skip there would hide a broken backend. Elsewhere (not
root, no apt-get, no packages) they are skipped with the reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SCRIPT = REPO / "scripts" / "slurm" / "local_cluster.sh"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    if _in_ci():
        pytest.fail(f"local SLURM cluster unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"local SLURM cluster unavailable: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Make sure the local cluster answers; return its default partition's name."""
    status = subprocess.run(["bash", str(CLUSTER_SCRIPT), "status"], capture_output=True,
                            text=True)
    if status.returncode != 0:
        if os.geteuid() != 0:
            _unavailable("it is not running and starting it needs root "
                         f"(run: sudo bash {CLUSTER_SCRIPT.relative_to(REPO)} start)")
        try:
            proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "start"], capture_output=True,
                                  text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            _unavailable(f"'local_cluster.sh start' did not finish in {exc.timeout} s")
        else:
            if proc.returncode != 0:
                _unavailable(f"'local_cluster.sh start' failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        _unavailable("sbatch/sacct not on PATH after start")
    return "debug"
