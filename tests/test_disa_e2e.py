"""DiSa end to end through its user scripts (base-to-novel, cross-dataset, DG, few-shot) and the
saliency visualisation, on generated datasets with the tiny random CLIP on CPU; then
``parse_test_res.py --base2new`` and ``--xd`` summarise the runs.

Independent jobs of a phase run concurrently: each is dominated by interpreter start-up.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_concurrently
from PIL import Image

sys.path.insert(0, str(REPO / "scripts"))
import protocol  # noqa: E402

FAST = ["DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "2",
        "DATALOADER.TEST.BATCH_SIZE", "50", "OPTIM.MAX_EPOCH", "2", "TRAIN.PRINT_FREQ", "1",
        "TRAINER.DISA.PROMPT_DEPTH_TEXT", "2", "TRAINER.DISA.PROMPT_DEPTH_VISION", "2",
        "TRAINER.DISA.GPA_MEAN", "2.0"]
LEARNED = {"ctx", "compound_prompts_text.0", "visual_ctx", "compound_prompts_visual.0"}
B2N_CFG = "vit_b16_c2_ep20_batch4_4+4ctx"



@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from disakit.datasets.synthetic import make_dataset

    root = tmp_path_factory.mktemp("data")
    for name in ("eurosat", "imagenet", "imagenet_a"):
        make_dataset(name, root, num_classes=4, per_class=(2, 1, 2), image_size=32)
    return root


def script(phase: str, *args: str, clip: Path) -> list[str]:
    return ["bash", f"scripts/disa/{phase}.sh", *args, "MODEL.BACKBONE.NAME", str(clip), *FAST]


def test_every_protocol_through_the_scripts_then_parse_and_visualise(data_root, tiny_clip_path,
                                                                       tmp_path):
    env = {"DATA": str(data_root), "OUTPUT": str(tmp_path), "SHOTS": "2"}
    trained = run_concurrently({
        "base2new": script("base2new_train", "eurosat", "1", clip=tiny_clip_path),
        "xd": script("xd_train", "1", clip=tiny_clip_path),
        "few_shot": script("few_shot", "eurosat", "2", "1", clip=tiny_clip_path),
    }, env)
    b2n_dir = tmp_path / "base2new/train_base/eurosat/shots_2/DiSa" / B2N_CFG / "seed1"
    tested = run_concurrently({
        "base2new": script("base2new_test", "eurosat", "1", clip=tiny_clip_path),
        "xd": script("xd_test", "eurosat", "1", clip=tiny_clip_path),
        "dg": script("dg_test", "imagenet_a", "1", clip=tiny_clip_path),
        "visualise": [sys.executable, "scripts/visualize_saliency.py", "--root", str(data_root),
                      "--dataset-config-file", "configs/datasets/eurosat.yaml", "--config-file",
                      f"configs/trainers/DiSa/{B2N_CFG}.yaml", "--backbone", str(tiny_clip_path),
                      "--model-dir", str(b2n_dir), "--load-epoch", "2", "--num-images", "3",
                      "--out", str(tmp_path / "png"), "DATASET.NUM_SHOTS", "2",
                      "DATASET.SUBSAMPLE_CLASSES", "base", *FAST],
    }, env)

    for name, out in trained.items():
        assert "Finish training" in out and "Using GPA model for final inference..." in out, name
        assert "Computing class prototypes (test transform" in out, name
        assert all(k in out for k in (" loss_ce ", " loss_sr ", " loss_cir ", " loss_dir ", " acc "))
    assert "TRAINER.DISA.GPA_MEAN 45.0 TRAINER.DISA.GPA_STD 5.0" in trained["few_shot"]  # group B
    assert "_cross_datasets.yaml" in trained["xd"]
    checkpoint = torch.load(b2n_dir / "prompt_learner/model.pth.tar-2", weights_only=False)
    assert set(checkpoint["state_dict"]) == LEARNED and checkpoint["gpa_epochs"] == 2
    for name in ("base2new", "xd", "dg"):
        out = tested[name]
        assert "=> result" in out and "Loading weights to prompt_learner from" in out, name
        assert "prototypes" not in out, name  # evaluation never computes them

    summary = subprocess.run([sys.executable, "parse_test_res.py", str(tmp_path / "base2new"),
                              "--base2new", "--shots", "2"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout
    assert f"Base-to-novel: DiSa / {B2N_CFG}" in summary and "| eurosat" in summary
    xd = subprocess.run([sys.executable, "parse_test_res.py", str(tmp_path / "evaluation"), "--xd",
                         "--shots", "2"], cwd=REPO, capture_output=True, text=True,
                        check=True).stdout
    assert "Cross-dataset / DG: DiSa /" in xd and "| eurosat" in xd and "| imagenet_a" in xd

    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in pngs] == ["saliency_000.png"]
    with Image.open(pngs[0]) as image:  # 3 rows x (original | heat map | masked), 4 px margins
        assert image.size == (3 * (224 + 4) + 4, 3 * (224 + 4) + 4) and image.mode == "RGB"


def test_every_protocol_resolves_to_an_existing_config_and_script():
    for phase in ("base2new_train", "base2new_test", "xd_train", "xd_test", "dg_test", "few_shot"):
        assert f"--trainer DiSa {phase} " in (REPO / "scripts/disa" / f"{phase}.sh").read_text()
    for name, shots in [("base2new", 16), ("xd", 16)] + [("few_shot", s) for s in protocol.FEW_SHOTS]:
        assert protocol.config_path("DiSa", protocol.config_name("DiSa", name, "dtd", shots)).is_file()


def test_published_setting_configs_merge_with_float_values():
    from disakit.dassl_api import get_cfg_default
    from disakit.trainers.config import extend_cfg

    expected = {B2N_CFG: (9, 20, 15.0, 1.0), f"{B2N_CFG}_cross_datasets": (3, 20, 6.0, 10.0),
                "vit_b16_c2_ep50_batch4_4+4ctx_few_shot": (9, 50, 30.0, 30.0)}
    for name, (depth, epochs, mean, std) in expected.items():
        cfg = get_cfg_default()
        extend_cfg(cfg)
        cfg.merge_from_file(str(REPO / "configs/trainers/DiSa" / f"{name}.yaml"))
        node = cfg.TRAINER.DISA
        assert (node.PROMPT_DEPTH_TEXT, node.PROMPT_DEPTH_VISION) == (depth, depth)
        assert (cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.LR, cfg.DATALOADER.TRAIN_X.BATCH_SIZE) == (
            epochs, 0.0025, 4)
        assert (node.GPA, node.GPA_MEAN, node.GPA_STD) == (True, mean, std)


def test_few_shot_gpa_groups(monkeypatch):
    monkeypatch.delenv("CFG", raising=False)

    def args(dataset: str) -> list[str]:
        ns = protocol.build_parser().parse_args(["--trainer", "DiSa", "few_shot", dataset, "4", "1"])
        return protocol.phase_jobs(ns)[0]

    assert args("eurosat")[-4:] == ["TRAINER.DISA.GPA_MEAN", "45.0", "TRAINER.DISA.GPA_STD", "5.0"]
    assert "TRAINER.DISA.GPA_MEAN" not in args("imagenet")  # the config's (30, 30) group
