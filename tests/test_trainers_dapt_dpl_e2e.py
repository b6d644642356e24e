"""DAPT and DPL base-to-novel end to end through their user scripts, on a generated EuroSAT-layout
dataset with the tiny random CLIP on CPU. The two trainers' jobs of a phase run concurrently:
each job is dominated by interpreter start-up and imports."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

FAST = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
        "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "1", "TRAIN.PRINT_FREQ", "1"]
# scripts folder -> (config name, options for the 2-layer tiny CLIP, learned checkpoint keys)
METHODS = {
    "dapt": ("vit_b16", [], {"txt_ctx", "vis_ctx"}),
    "dpl": ("vit_b16_c2_ep5_batch4_4+4ctx",
            ["TRAINER.DPL.PROMPT_DEPTH_TEXT", "2", "TRAINER.DPL.PROMPT_DEPTH_VISION", "2"],
            {"text.delta", "text.gate", "vision.delta", "vision.gate"}),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    make_dataset("eurosat", root, num_classes=4, per_class=(2, 1, 2), image_size=32)
    return root


def run_phase(phase: str, clip_path: Path, env: dict) -> dict[str, str]:
    """``scripts/<method>/<phase>.sh eurosat 1`` for both methods at once; their outputs."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHON": sys.executable, **env}
    procs = {m: subprocess.Popen(["bash", f"scripts/{m}/{phase}.sh", "eurosat", "1",
                                  "MODEL.BACKBONE.NAME", str(clip_path), *FAST, *extra],
                                 cwd=REPO, env=full_env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
             for m, (_, extra, _) in METHODS.items()}
    outputs = {m: proc.communicate()[0] for m, proc in procs.items()}
    for m, proc in procs.items():
        assert proc.returncode == 0, f"scripts/{m}/{phase}.sh failed:\n{outputs[m][-4000:]}"
    return outputs


def test_base_to_novel_through_the_scripts(data_root, tiny_clip_path, tmp_path):
    env = {"DATA": str(data_root), "OUTPUT": str(tmp_path), "SHOTS": "2"}
    train = run_phase("base2new_train", tiny_clip_path, env)
    test = run_phase("base2new_test", tiny_clip_path, env)
    for method, (cfg, _, keys) in METHODS.items():
        sub = Path(f"eurosat/shots_2/{method.upper()}/{cfg}/seed1")
        ckpt = tmp_path / "base2new/train_base" / sub / "prompt_learner/model.pth.tar-1"
        assert set(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]) == keys
        assert "* accuracy:" in train[method]
        log = (tmp_path / "base2new/test_new" / sub / "log.txt").read_text()
        assert "# classes  2" in log and "* accuracy:" in log
        assert f'Loading weights to prompt_learner from "{ckpt}"' in test[method]
    # DAPT: the per-dataset LR/betas reach train.py; prototypes are made once when training
    # starts and cached next to the few-shot split; evaluation never needs them.
    assert "'OPTIM.LR', '20.0', 'TRAINER.DAPT.VIS_BETA', '100.0'" in train["dapt"]
    cache = data_root / "eurosat/split_fewshot/shot_2-seed_1_dapt-prototype_base_train.pt"
    assert "Saving class prototypes to" in train["dapt"] and cache.is_file()
    assert "prototypes" not in test["dapt"]
    assert " gate " in train["dpl"]  # DPL logs the mean gate magnitude
