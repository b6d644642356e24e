"""The seam uses an installed ``dassl`` when importable, and our engine never shadows it."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from conftest import REPO, run_cli

# A stand-in "real Dassl": its own registries (distinct objects), the rest borrowed from
# dasslite so that the trainer classes can subclass something real.
FAKE_DASSL = {
    "dassl/__init__.py": "",
    "dassl/config/__init__.py": "from disakit.dasslite.config import get_cfg_default, clean_cfg\n",
    "dassl/engine/__init__.py": textwrap.dedent("""
        from disakit.dasslite.utils import Registry
        from disakit.dasslite.engine import TrainerBase, SimpleTrainer, TrainerX, build_trainer
        TRAINER_REGISTRY = Registry("TRAINER")
    """),
    "dassl/data/__init__.py": "from disakit.dasslite.data import DataManager, DatasetWrapper\n",
    "dassl/data/datasets/__init__.py": textwrap.dedent("""
        from disakit.dasslite.utils import Registry
        from disakit.dasslite.data.datasets import Datum, DatasetBase, build_dataset
        DATASET_REGISTRY = Registry("DATASET")
    """),
    "dassl/data/transforms/__init__.py": "from disakit.dasslite.data.transforms import build_transform\n",
    "dassl/optim/__init__.py": "from disakit.dasslite.optim import build_optimizer, build_lr_scheduler\n",
    "dassl/evaluation/__init__.py":
        "from disakit.dasslite.evaluation import EVALUATOR_REGISTRY, build_evaluator\n",
    "dassl/metrics/__init__.py": "from disakit.dasslite.metrics import compute_accuracy\n",
    "dassl/utils/__init__.py": "from disakit.dasslite.utils import *\n",
}

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
    for rel, text in FAKE_DASSL.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_real_dassl_is_used_when_importable(tmp_path: Path):
    _write_fake(tmp_path)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "DASSL_BACKEND": ""}
    out = run_cli(sys.executable, "-c", PROBE, env=env).stdout.split()
    assert out == ["dassl", "True", "True", "False", "True"]


def test_bundled_engine_when_dassl_is_absent_or_forced(tmp_path: Path):
    probe = "from disakit import dassl_api, trainers; print(dassl_api.BACKEND)"
    assert run_cli(sys.executable, "-c", probe, env={"DASSL_BACKEND": ""}).stdout.strip() == "dasslite"
    _write_fake(tmp_path)
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "DASSL_BACKEND": "dasslite"}
    assert run_cli(sys.executable, "-c", probe, env=env).stdout.strip() == "dasslite"


def test_engine_does_not_own_the_dassl_name():
    assert not (REPO / "dassl").exists()
    assert not (REPO / "dassl.py").exists()
