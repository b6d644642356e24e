"""Shared fixtures: a generated tiny CLIP checkpoint and generated datasets (never real data)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Tests use the bundled engine even where a real Dassl happens to be installed.
os.environ.setdefault("DASSL_BACKEND", "dasslite")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from disakit.bundle import register  # noqa: E402

register(verbose=False)  # our trainers and readers, as train.py does


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    """A randomly initialised ``tiny`` CLIP (224 input, patch 32, width 64) in the OpenAI layout."""
    from disakit.clipkit.random_clip import build_random_clip, save_clip

    path = tmp_path_factory.mktemp("clip") / "tiny-clip.pt"
    save_clip(build_random_clip("tiny", seed=0), path, fmt="state_dict")
    return path


def toolkit_cfg(trainer: str | None = None, *opts, config: str | Path | None = None):
    """What ``train.py`` builds before the dataset: the engine's defaults plus the toolkit's keys,
    then ``config`` (a YAML file), ``TRAINER.NAME`` and ``opts`` (KEY VALUE pairs)."""
    from disakit.dassl_api import get_cfg_default
    from disakit.trainers.config import extend_cfg

    cfg = get_cfg_default()
    extend_cfg(cfg)
    if config:
        cfg.merge_from_file(str(config))
    if trainer:
        cfg.TRAINER.NAME = trainer
    cfg.merge_from_list(list(opts))
    return cfg


def run_cli(*args: str, env: dict | None = None, check: bool = True,
            cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a repository entry point (``train.py``, a script) as a user would, capturing output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable, **(env or {})}
    proc = subprocess.run(list(args), cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def run_concurrently(jobs: dict[str, list[str]], env: dict) -> dict[str, str]:
    """Start every command at once (each is mostly interpreter start-up), wait for all, and
    fail naming the job and its output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable, **env}
    procs = {name: subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name, cmd in jobs.items()}
    outputs = {name: proc.communicate()[0] for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}: {jobs[name]} failed:\n{outputs[name][-4000:]}"
    return outputs


def kl_by_hand(p_logits, q_logits) -> float:
    """Σ_b Σ_c p log(p/q) of the two logits' softmaxes, with loops over plain floats."""
    import math

    out = 0.0
    for p_row, q_row in zip(p_logits.tolist(), q_logits.tolist()):
        zp, zq = sum(math.exp(v) for v in p_row), sum(math.exp(v) for v in q_row)
        for pv, qv in zip(p_row, q_row):
            p, q = math.exp(pv) / zp, math.exp(qv) / zq
            out += p * math.log(p / q)
    return out


# Options that make a train.py run fast on CPU with the tiny CLIP.
FAST_OPTS = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
             "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "2", "TRAIN.PRINT_FREQ", "1"]
