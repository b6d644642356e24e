"""TCP base-to-novel end to end on a generated EuroSAT-layout dataset with the tiny random CLIP on
CPU (1 epoch): through its user scripts and the paper-table driver (``scripts/reproduce.py
--methods TCP``), which shares their folders. Each job is mostly interpreter start-up, so the
test runs two jobs, not four."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

FAST = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
        "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "1", "TRAIN.PRINT_FREQ", "1",
        "TRAINER.TCP.CLASS_TOKEN_LAYER", "1"]  # the tiny CLIP has 2 text layers
SUB = Path("eurosat/shots_2/TCP/vit_b16_ep100_ctxv1/seed1")
LEARNED = {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
           "meta_net.linear2.bias"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(2, 1, 2), image_size=32)
    return root


def run(cmd: list[str], out: Path, data_root: Path) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable,
           "DATA": str(data_root), "OUTPUT": str(out), "SHOTS": "2"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def test_base_to_novel_through_the_scripts_and_the_reproduce_driver(data_root, tiny_clip_path,
                                                                    tmp_path):
    """The training through its script; then the driver finds that job done (same folder, same
    configuration) and runs the new-class test, itself a call of scripts/tcp/base2new_test.sh."""
    opts = ["MODEL.BACKBONE.NAME", str(tiny_clip_path), *FAST]
    train = run(["bash", "scripts/tcp/base2new_train.sh", "eurosat", "1", *opts], tmp_path,
                data_root)
    assert "'TRAINER.TCP.TEMPLATE', 'X X X X {}.'" in train  # the table reaches train.py
    driver = run([sys.executable, "scripts/reproduce.py", "--methods", "TCP", "--settings",
                  "base2new", "--datasets", "eurosat", "--seeds", "1", "--workers", "1", *opts],
                 tmp_path, data_root)
    assert "2 jobs: 1 done, 0 running elsewhere, 1 to run (local backend)" in driver
    assert "[reproduce] 1/1 done, 0 running, 0 failed" in driver

    ckpt = tmp_path / "base2new/train_base" / SUB / "prompt_learner/model.pth.tar-1"
    assert set(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]) == LEARNED
    train_log = (tmp_path / "base2new/train_base" / SUB / "log.txt").read_text()
    assert 'Prompt template: "X X X X {}."' in train_log  # EuroSAT's entries of TCP's table
    assert 'from "a centered satellite photo of {}."' in train_log
    assert "Optimizer adam: eps 0.001 (TRAINER.TCP.ADAM_EPS)" in train_log
    assert "* accuracy:" in train_log
    test_log = (tmp_path / "base2new/test_new" / SUB / "log.txt").read_text()
    assert "# classes  2" in test_log and "* accuracy:" in test_log
    assert f'Loading weights to prompt_learner from "{ckpt}"' in test_log
    with open(tmp_path / "report/base2new.csv") as f:
        cells = [c for c in csv.DictReader(f) if c["method"] == "TCP"]
    assert {(c["dataset"], c["metric"]) for c in cells} >= {("eurosat", m)
                                                            for m in ("base", "new", "hm")}
