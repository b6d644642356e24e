"""MMRL and MMRL++ base-to-novel end to end: through their user scripts (``scripts/mmrl/``,
``scripts/mmrlpp/``) and through the paper-table driver (``scripts/reproduce.py``), on a
generated EuroSAT-layout dataset with the tiny random CLIP on CPU (1 epoch, a few images).

The driver's run and the scripts' phases overlap: each job is mostly interpreter start-up."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_cli, run_concurrently

# scripts folder -> (trainer, config node); the tiny CLIP has 2 layers: representation layers 1-2
METHODS = {"mmrl": ("MMRL", "MMRL"), "mmrlpp": ("MMRLpp", "MMRLPP")}
FAST = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
        "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "1", "TRAIN.PRINT_FREQ", "1"]


def tiny_opts(node: str, clip: Path) -> list[str]:
    return ["MODEL.BACKBONE.NAME", str(clip), *FAST, f"TRAINER.{node}.REP_LAYERS", "[1,2]"]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(2, 1, 2), image_size=32)
    return root


def test_base_to_novel_through_the_scripts_and_the_reproduce_driver(data_root, tiny_clip_path,
                                                                     tmp_path):
    env = {"DATA": str(data_root), "SHOTS": "2"}
    driver_out = tmp_path / "driver"
    driver = subprocess.Popen(
        [sys.executable, "scripts/reproduce.py", "--methods", "MMRL", "--settings", "base2new",
         "--datasets", "eurosat", "--seeds", "1", "--workers", "1", *tiny_opts("MMRL", tiny_clip_path)],
        cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1", **env, "OUTPUT": str(driver_out),
                       "SHOTS": "16"},  # the published rows are 16-shot (all 2 images are used)
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    scripts_out = tmp_path / "scripts"
    env["OUTPUT"] = str(scripts_out)

    def jobs(phase: str) -> dict[str, list[str]]:
        return {folder: ["bash", f"scripts/{folder}/{phase}.sh", "eurosat", "1",
                         *tiny_opts(node, tiny_clip_path)]
                for folder, (_, node) in METHODS.items()}

    trained = run_concurrently(jobs("base2new_train"), env)
    tested = run_concurrently(jobs("base2new_test"), env)
    for folder, (trainer, node) in METHODS.items():
        sub = Path(f"eurosat/shots_2/{trainer}/vit_b16/seed1")
        ckpt = (scripts_out / "base2new/train_base" / sub / "MultiModalRepresentationLearner"
                / "model.pth.tar-1")
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)
        assert all(k.startswith(("compound_rep_tokens", "srra_", "proj_")) for k in saved["state_dict"])
        assert saved["source_dataset"] == "EuroSAT"
        # Training: the table's options reach train.py; the final (base) test is fused.
        assert f"TRAINER.{node}.REG_WEIGHT 0.01" in trained[folder]
        assert f"TRAINER.{node}.TASK B2N" in trained[folder]
        assert "fused logits (0.7 class + 0.3 representation) [TASK B2N, base classes]" \
            in trained[folder]
        assert "Finish training" in trained[folder] and "* accuracy:" in trained[folder]
        # The new-class test: class-token logits only, from the trained checkpoint.
        log = (scripts_out / "base2new/test_new" / sub / "log.txt").read_text()
        assert "# classes  2" in log and "* accuracy:" in log
        assert "class-token logits only [TASK B2N, new classes]" in log
        assert f'Loading weights to MultiModalRepresentationLearner from "{ckpt}"' in tested[folder]
    assert "REP_DIM 2048" in trained["mmrl"]  # MMRL's EuroSAT entry
    assert "TRAINER.MMRLPP.BETA 0.2" in trained["mmrlpp"]

    summary = run_cli(sys.executable, "parse_test_res.py", str(scripts_out / "base2new"),
                      "--base2new", "--shots", "2").stdout
    for trainer, _ in METHODS.values():
        assert f"Base-to-novel: {trainer} /" in summary, summary

    output = driver.communicate()[0]
    assert driver.returncode == 0, output[-4000:]
    assert "[reproduce] 2/2 done" in output, output[-4000:]
    with open(driver_out / "report" / "base2new.csv") as f:
        cells = [c for c in csv.DictReader(f) if c["method"] == "MMRL" and c["dataset"] == "eurosat"]
    published = {c["metric"]: c["published"] for c in cells}
    assert published == {"base": "95.60", "new": "80.17", "hm": "87.21"}, cells
    assert all(c["mean"] for c in cells), cells
