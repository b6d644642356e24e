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


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    """A randomly initialised ``tiny`` CLIP (224 input, patch 32, width 64) in the OpenAI layout."""
    from clipkit.random_clip import build_random_clip, save_clip

    path = tmp_path_factory.mktemp("clip") / "tiny-clip.pt"
    save_clip(build_random_clip("tiny", seed=0), path, fmt="state_dict")
    return path


def run_cli(*args: str, env: dict | None = None, check: bool = True,
            cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a repository entry point (``train.py``, a script) as a user would, capturing output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable, **(env or {})}
    proc = subprocess.run(list(args), cwd=cwd, env=full_env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


# Options that make a train.py run fast on CPU with the tiny CLIP.
FAST_OPTS = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
             "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "2", "TRAIN.PRINT_FREQ", "1"]
