"""The seam uses an installed ``dassl`` when importable, and our engine never shadows it."""
from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

from conftest import REPO, run_cli

# A stand-in "real Dassl": the test double of Dassl 0.6.3 in tests/fake_dassl (its own registries
# and engine; see its dassl/__init__.py).
FAKE_DASSL = Path(__file__).resolve().parent / "fake_dassl"

PROBE = textwrap.dedent("""
    import dassl
    from disakit import bundle, dassl_api
    bundle.register()
    import disakit.dasslite.engine, disakit.dasslite.data.datasets
    dasslite = disakit.dasslite
    print(dassl_api.BACKEND)
    print(dassl_api.TRAINER_REGISTRY is dassl.engine.TRAINER_REGISTRY)
    print("CoOp" in dassl.engine.TRAINER_REGISTRY.registered_names())
    print("CoOp" in dasslite.engine.TRAINER_REGISTRY.registered_names())
    print(len(dassl.data.datasets.DATASET_REGISTRY.registered_names()) > 0)
""")


def _write_fake(root: Path) -> None:
    """Copy the test double to ``root`` (``root/dassl``), for a ``PYTHONPATH`` of its own."""
    shutil.copytree(FAKE_DASSL / "dassl", root / "dassl",
                    ignore=shutil.ignore_patterns("__pycache__"))


def test_real_dassl_is_used_when_importable(tmp_path: Path):
    _write_fake(tmp_path)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "DASSL_BACKEND": ""}
    lines = run_cli(sys.executable, "-c", PROBE, env=env).stdout.splitlines()
    assert lines[0].startswith("disakit: adapted Dassl 0.6.3 to torch ")  # dassl_compat's line
    assert lines[1:] == ["dassl", "True", "True", "False", "True"]


def test_bundled_engine_when_dassl_is_absent_or_forced(tmp_path: Path):
    probe = "from disakit import dassl_api, trainers; print(dassl_api.BACKEND)"
    assert run_cli(sys.executable, "-c", probe, env={"DASSL_BACKEND": ""}).stdout.strip() == "dasslite"
    _write_fake(tmp_path)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "DASSL_BACKEND": "dasslite"}
    assert run_cli(sys.executable, "-c", probe, env=env).stdout.strip() == "dasslite"


def test_engine_does_not_own_the_dassl_name():
    assert not (REPO / "dassl").exists()
    assert not (REPO / "dassl.py").exists()
